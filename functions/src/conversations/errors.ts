import type { ErrorCode } from '../contract/api.js';
import type { LimitHit } from '../domain/quota.js';

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

/** A start or change the quota refuses, as the client is told it. */
export function refusal({ limit, max, retryAfterSeconds, message }: LimitHit): ServiceError {
  return new ServiceError('rate_limited', `limit ${limit} reached: ${message}`, { limit, max, retryAfterSeconds });
}
