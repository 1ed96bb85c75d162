import { Readable } from 'node:stream';
import type { NextFunction, Request, Response } from 'express';
import { PUBLIC_ROUTES } from '../contract/routes.js';
import { ServiceError } from '../conversations/errors.js';
import { sendError } from './errors.js';

/**
 * Request bodies. The Functions Framework reads every body before our code runs and keeps the
 * bytes in `rawBody`; outside it (a plain server) the stream is still unread.
 */
type FrameworkRequest = Request & { rawBody?: Buffer };

export function rawBody(req: Request): Buffer | undefined {
  const raw = (req as FrameworkRequest).rawBody;
  return Buffer.isBuffer(raw) ? raw : undefined;
}

export function bodyStream(req: Request): Readable {
  const raw = rawBody(req);
  if (raw !== undefined) return Readable.from([raw]);
  if (Buffer.isBuffer(req.body)) return Readable.from([req.body]);
  return req;
}

/** The largest JSON body read (a batch of progress events is the largest the runner sends). */
const MAX_JSON_BYTES = 8 * 1024 * 1024;

/** The whole body, refused as too large past `maxBytes` (counted as it arrives, never buffered past it). */
export async function bodyBytes(req: Request, maxBytes: number): Promise<Buffer> {
  const tooLarge = () => new ServiceError('too_large', `request body over the limit of ${maxBytes} bytes`);
  const raw = rawBody(req);
  if (raw !== undefined) {
    if (raw.length > maxBytes) throw tooLarge();
    return raw;
  }
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of req) {
    bytes += (chunk as Buffer).length;
    if (bytes > maxBytes) {
      req.destroy();
      throw tooLarge();
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** The body as parsed JSON, whatever the framework made of it. */
export async function jsonBody(req: Request): Promise<unknown> {
  if (req.body !== undefined && !Buffer.isBuffer(req.body) && typeof req.body === 'object' && rawBody(req) !== undefined) {
    return req.body;
  }
  const bytes = await bodyBytes(req, MAX_JSON_BYTES);
  if (bytes.length === 0) throw new ServiceError('invalid_request', 'request body must be a JSON object');
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new ServiceError('invalid_request', 'request body is not valid JSON');
  }
}

/** How much of a body is read before any route runs. */
export interface BodyLimits {
  /** Every body but a workspace file's. */
  maxBytes: number;
  /**
   * A file put into a workspace (PUT …/files/<path>) may be larger; only so many such bodies are
   * held at once on an instance, since each is read whole before anyone is authenticated.
   */
  files?: { maxBytes: number; inFlight: number };
}

/** The requests that put a file, matched as the router will (PUBLIC_ROUTES.file). */
const FILE_PUT = new RegExp(`^${PUBLIC_ROUTES.file.replace(/:\w+/g, '[^/]+').replace(/\*\w+$/, '.+')}$`);

/**
 * Reads every request's body before the Functions Framework's own parsers do (they accept a
 * gigabyte, before any authentication), refusing one over its limit as it arrives. The bytes
 * are kept where the framework keeps them (`rawBody`), and the framework's parsers, seeing the
 * body read, leave it alone.
 */
export function bodyWithin(limits: BodyLimits) {
  let filesInFlight = 0;
  return function readBodyWithin(req: Request, res: Response, next: NextFunction): void {
    const encoding = (req.get('content-encoding') ?? 'identity').trim().toLowerCase();
    if (encoding !== 'identity')
      return refuse(res, 'invalid_request', `Content-Encoding ${encoding.slice(0, 50)} is not accepted: send the body unencoded`);
    const files = req.method === 'PUT' && FILE_PUT.test(req.path) ? limits.files : undefined;
    if (files !== undefined) {
      if (filesInFlight >= files.inFlight) {
        return refuse(res, 'unavailable', `${files.inFlight} file uploads are being received already; retry in a moment`, { retryAfterSeconds: 1 });
      }
      filesInFlight += 1;
      let released = false;
      const release = () => {
        if (!released) filesInFlight -= 1;
        released = true;
      };
      res.once('close', release);
      res.once('finish', release);
    }
    const maxBytes = files?.maxBytes ?? limits.maxBytes;
    const declared = Number(req.get('content-length'));
    if (declared > maxBytes) return refuse(res, 'too_large', `request body over the limit of ${maxBytes} bytes`);
    const chunks: Buffer[] = [];
    let bytes = 0;
    let refused = false;
    req.on('data', (chunk: Buffer) => {
      if (refused) return;
      bytes += chunk.length;
      if (bytes > maxBytes) {
        refused = true;
        return refuse(res, 'too_large', `request body over the limit of ${maxBytes} bytes`);
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (refused) return;
      (req as FrameworkRequest).rawBody = Buffer.concat(chunks);
      // body-parser's own mark of a body already read.
      (req as Request & { _body?: boolean })._body = true;
      next();
    });
    req.on('error', () => {
      refused = true;
    });
  };
}

/** Answers at once and closes the connection, leaving the rest of the body unread. */
function refuse(res: Response, code: 'invalid_request' | 'too_large' | 'unavailable', message: string, details?: Record<string, unknown>): void {
  res.setHeader('connection', 'close');
  sendError(res, code, message, details);
  res.on('finish', () => res.req.socket.destroy());
}
