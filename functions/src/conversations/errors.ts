import type { ErrorCode } from '../contract/api.js';

/** A failure the caller should see, by code; http/ alone turns codes into status codes. */
export class ServiceError extends Error {
  override name = 'ServiceError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}
