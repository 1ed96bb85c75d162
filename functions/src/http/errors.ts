import type { NextFunction, Request, Response } from 'express';
import type { ErrorBody, ErrorCode } from '../contract/api.js';
import { ServiceError } from '../conversations/errors.js';

/** The one map from error code to HTTP status; the compiler flags a code without one. */
export const STATUS_OF: Record<ErrorCode, number> = {
  invalid_request: 400,
  unauthenticated: 401,
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
