import type http from 'node:http';
import type { Duplex } from 'node:stream';
import type { NextFunction, Request, Response } from 'express';
import type { ErrorBody, ErrorCode } from '../contract/api.js';
import { ServiceError } from '../conversations/errors.js';

/** The one map from error code to HTTP status; the compiler flags a code without one. */
export const STATUS_OF: Record<ErrorCode, number> = {
  invalid_request: 400,
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  too_large: 413,
  rate_limited: 429,
  internal: 500,
  sandbox_failed: 502,
  unavailable: 503,
  timed_out: 504,
};

export function sendError(res: Response, code: ErrorCode, message: string, details?: Record<string, unknown>): void {
  const body: ErrorBody = { error: { code, message, ...(details ? { details } : {}) } };
  const retryAfter = details?.retryAfterSeconds;
  if (typeof retryAfter === 'number') res.setHeader('Retry-After', String(retryAfter));
  res.status(STATUS_OF[code]).json(body);
}

/**
 * Turns anything thrown into a JSON error. Body-parser failures carry a status and a type;
 * anything else is a fault of ours: logged whole, answered without a stack trace.
 */
export function errorHandler(log: (message: string) => void) {
  return function jsonErrors(error: unknown, _req: Request, res: Response, _next: NextFunction): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (error instanceof ServiceError) return sendError(res, error.code, error.message, error.details);
    const parserError = error as { type?: string; status?: number };
    if (parserError.type === 'entity.parse.failed') return sendError(res, 'invalid_request', 'request body is not valid JSON');
    if (parserError.type === 'entity.too.large') return sendError(res, 'too_large', 'request body is too large');
    if (typeof parserError.status === 'number' && parserError.status >= 400 && parserError.status < 500) {
      return sendError(res, 'invalid_request', 'the request could not be read');
    }
    log(`internal error: ${(error as Error).stack ?? String(error)}`);
    sendError(res, 'internal', 'internal error');
  };
}

/**
 * Requests Node cannot parse (a bad method, headers over its limit, garbage) never reach the
 * app; Node would answer them with a bare status. They get the same JSON as every other error.
 */
export function answerClientErrorsAsJson(server: http.Server): http.Server {
  const answer = (socket: Duplex, message: string) => {
    const body = JSON.stringify({ error: { code: 'invalid_request', message } } satisfies ErrorBody);
    socket.end(
      `HTTP/1.1 ${STATUS_OF.invalid_request} Bad Request\r\ncontent-type: application/json; charset=utf-8\r\n` +
        `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  };
  return (
    server
      .on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
        if (error.code === 'ECONNRESET' || !socket.writable) return socket.destroy();
        answer(socket, error.code === 'HPE_HEADER_OVERFLOW' ? 'the request headers are too large' : 'the request could not be parsed as HTTP');
      })
      // Node hands CONNECT (a tunnel) to this event only, and drops the connection without it.
      .on('connect', (_req: http.IncomingMessage, socket: Duplex) => answer(socket, 'CONNECT is not offered here'))
  );
}

/** Only a path (or an absolute URL) names a route; `*` and the like get a JSON 404 before any router sees them. */
export function originFormOnly(req: Request, res: Response, next: NextFunction): void {
  if (req.url.startsWith('/') || /^https?:\/\//i.test(req.url)) return next();
  sendError(res, 'not_found', `no route for ${req.method} ${req.url.slice(0, 200)}`);
}
