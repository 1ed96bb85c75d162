import type { ErrorCode, TurnView } from '../../contract/api.js';
import { ApiError } from './api.js';

/** A problem in words for people: what happened, and the service's own message when there is one. */
export interface Described {
  summary: string;
  detail: string | undefined;
}

/** A wait in the unit people would use for it. */
function inWords(seconds: number): string {
  if (seconds < 90) return `${seconds} s`;
  if (seconds < 90 * 60) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}

/** What each fair-use limit (`details.limit` of a 429) means for the person who hit it. */
const LIMITS: Record<string, string> = {
  running_turns: 'You have as many turns running as you may at once',
  turns_per_minute: 'Too many requests',
  daily_tokens: "Today's token budget is used up",
  daily_cost: "Today's cost budget is used up",
  running_sandboxes: 'The service is running as many turns as it can',
  sandbox_starts_per_minute: 'The service is starting as many turns as it can this minute',
};

/**
 * Each of the API's error codes (contract/api.ts) in words, and the page's own `network`: a code
 * the API gains is a compile error here until it is put in words.
 */
const SUMMARIES: Record<ErrorCode | 'network', (error: ApiError) => string> = {
  network: () => 'Cannot reach the service. Check the connection and try again.',
  unauthenticated: () => 'Your sign-in was not accepted.',
  forbidden: () => 'The service does not allow that.',
  not_found: () => 'That conversation does not exist, or it is not yours.',
  conflict: (error) =>
    error.details?.activeTurnId !== undefined
      ? 'Another turn is still running in this conversation. Wait for it to finish or cancel it.'
      : 'That turn has already finished.',
  too_large: () => 'The message is too long.',
  rate_limited: (error) => {
    const limit = error.details?.limit;
    const what = (typeof limit === 'string' ? LIMITS[limit] : undefined) ?? 'Too many requests';
    return `${what} — try again ${error.retryAfterSeconds !== undefined ? `in ${inWords(error.retryAfterSeconds)}` : 'in a moment'}.`;
  },
  invalid_request: () => 'The service could not accept that request.',
  sandbox_failed: () => 'The sandbox failed while running the turn.',
  timed_out: () => 'The turn ran out of time.',
  unavailable: () => 'The service is not available right now. Try again shortly.',
  internal: () => 'Something went wrong inside the service.',
};

const isKnownCode = (code: string): code is keyof typeof SUMMARIES => Object.hasOwn(SUMMARIES, code);

function summaryOf(error: ApiError): string {
  if (isKnownCode(error.code)) return SUMMARIES[error.code](error);
  // Not an answer of this API (a front end's), or a code newer than this page.
  return error.status === undefined ? 'The service did not answer.' : `The service answered with an unexpected error (HTTP ${error.status}).`;
}

/** A failure already put in words by the page (sign-in with Firebase, say). */
export class WordedError extends Error {
  override name = 'WordedError';
  constructor(
    readonly summary: string,
    readonly detail?: string,
  ) {
    super(summary);
  }
}

/**
 * The sign-in is over (a Firebase refresh token was refused, so no new ID token will come without
 * the password): asking again will not help, the page goes back to sign-in, saying why.
 */
export class SignInEnded extends WordedError {
  override name = 'SignInEnded';
}

export function describeError(error: unknown): Described {
  if (error instanceof WordedError) return { summary: error.summary, detail: error.detail };
  if (error instanceof ApiError) {
    return { summary: summaryOf(error), detail: error.code === 'network' ? undefined : error.apiMessage };
  }
  return { summary: 'Something went wrong in this page.', detail: error instanceof Error ? error.message : String(error) };
}

/** How a finished turn ended, in words. */
export function describeTurnEnd(turn: Pick<TurnView, 'status' | 'reason'>): string {
  switch (turn.status) {
    case 'succeeded':
      return 'Done';
    case 'cancelled':
      return 'Cancelled';
    case 'timed_out':
      return `Ran out of time${turn.reason ? `: ${turn.reason}` : ''}`;
    case 'failed':
      return `Failed${turn.reason ? `: ${turn.reason}` : ''}`;
    default:
      return describeStatus(turn.status);
  }
}

/** A turn that is not finished yet, in words. */
export function describeStatus(status: TurnView['status']): string {
  switch (status) {
    case 'queued':
      return 'Waiting to start…';
    case 'starting':
      return 'Starting the sandbox…';
    case 'running':
      return 'The agent is working…';
    default:
      return describeTurnEnd({ status, reason: null });
  }
}
