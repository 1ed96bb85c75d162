import { Readable } from 'node:stream';
import type { Request } from 'express';
import { ServiceError } from '../conversations/errors.js';

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
