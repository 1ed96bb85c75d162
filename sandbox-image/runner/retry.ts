import { setTimeout as sleep } from 'node:timers/promises';

/** How long and how often one call is tried again. */
export interface RetryPolicy {
  /** No attempt starts once this long has passed since the first. */
  budgetMs: number;
  /** For this long after the first attempt, retry every `tightDelayMs` without backing off. */
  tightMs: number;
  tightDelayMs: number;
  /** After that, exponential backoff from `baseDelayMs` up to `maxDelayMs`, with jitter. */
  baseDelayMs: number;
  maxDelayMs: number;
}

/** Whether a failed attempt is worth another, and how long the other side asked us to wait. */
export type Verdict = { retry: false } | { retry: true; afterMs?: number };

export interface Clock {
  now(): number;
  random(): number;
  sleep(ms: number): Promise<void>;
}

const realClock: Clock = { now: Date.now, random: Math.random, sleep: (ms) => sleep(ms) };

/**
 * Runs `attempt` until it succeeds, `classify` says its error is final, or the policy's budget is
 * spent; then the last error is thrown. Backoff has "equal jitter" (half fixed, half random), so
 * that sandboxes failing together do not all come back at the same moment.
 */
export async function withRetries<T>(
  attempt: () => Promise<T>,
  classify: (error: unknown) => Verdict,
  policy: RetryPolicy,
  clock: Clock = realClock,
): Promise<T> {
  const start = clock.now();
  for (let backoffs = 0; ; ) {
    try {
      return await attempt();
    } catch (error) {
      const verdict = classify(error);
      const elapsed = clock.now() - start;
      const left = policy.budgetMs - elapsed;
      if (!verdict.retry || left <= 0) throw error;
      let delay: number;
      if (elapsed < policy.tightMs) {
        delay = policy.tightDelayMs;
      } else {
        const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** backoffs++);
        delay = ceiling / 2 + (clock.random() * ceiling) / 2;
      }
      // Retry-After is honoured, but never past the budget: one last attempt is made at its end.
      await clock.sleep(Math.min(Math.max(delay, verdict.afterMs ?? 0), left));
    }
  }
}

/** A Retry-After header (delay-seconds or an HTTP date, RFC 9110 section 10.2.3) in milliseconds. */
export function retryAfterMs(header: string | undefined, now = Date.now()): number | undefined {
  if (header === undefined) return undefined;
  if (/^\d+$/.test(header.trim())) return Number(header.trim()) * 1000;
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}
