import http from 'node:http';
import https from 'node:https';
import type { AgentEvent, RunnerResult, RunnerTurn, WarmClaimAnswer } from '../../functions/src/contract/runner.js';
import { runnerPaths, runnerUrl } from '../../functions/src/contract/runner-paths.js';
import { retryAfterMs, withRetries, type Clock, type RetryPolicy, type Verdict } from './retry.js';

/** The API answered, but not with success. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    /** What the answer's Retry-After asked for, if anything. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

/** No answer came: the connection failed or broke. */
export class NetworkError extends Error {
  constructor(
    readonly code: string | undefined,
    /** Whether the whole request had been handed to the connection: only then can the API have acted on it. */
    readonly sent: boolean,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The very first call: the local bridge comes up within milliseconds of the runner, so it is
 * polled tightly for a moment (every turn pays that wait); a Cloud Run execution with Direct VPC
 * egress may see "connection establishment delays of a minute or more on instance startup"
 * (cloud.google.com/run/docs/configuring/vpc-direct-vpc), so it keeps trying for 90 s.
 */
export const FIRST_CONTACT: RetryPolicy = { budgetMs: 90_000, tightMs: 1_000, tightDelayMs: 5, baseDelayMs: 250, maxDelayMs: 5_000 };
/** Any later call: a dropped connection, a front end or an instance that is briefly overloaded. */
export const LATER_CALL: RetryPolicy = { budgetMs: 60_000, tightMs: 0, tightDelayMs: 0, baseDelayMs: 250, maxDelayMs: 5_000 };
/** The result is the turn's whole work: it is tried for longer. */
export const RESULT_CALL: RetryPolicy = { ...LATER_CALL, budgetMs: 120_000 };
/** Progress is best-effort, and the result waits for it to be flushed: it is given up sooner. */
export const PROGRESS_CALL: RetryPolicy = { ...LATER_CALL, budgetMs: 15_000 };

/** A connection that is not up by then is tried again (Linux alone would wait ~2 min for a SYN). */
const CONNECT_TIMEOUT_MS = 10_000;
/** Silence on an open connection this long ends the attempt (a result waits up to ~20 s for the sandbox's stop). */
const IDLE_TIMEOUT_MS = 120_000;

/** Errors of a connection that failed or broke ("socket hang up" is ECONNRESET). */
const TRANSIENT_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ETIMEDOUT',
  'EPIPE',
  'ENOENT',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'ECONNABORTED',
]);
/** "Not now" from the API or a front end before it. */
const TRANSIENT_STATUSES = new Set([429, 502, 503, 504]);
/**
 * The statuses that say the request was not acted on (RFC 6585 section 4, RFC 9110 section
 * 15.6.4): a call that is not idempotent may be sent again after these, not after a 502 or 504.
 */
const NOT_ACTED_ON = new Set([429, 503]);

/** Whether an attempt of an idempotent call (a replay changes nothing) is worth another. */
export function idempotentVerdict(error: unknown): Verdict {
  if (error instanceof ApiError) return TRANSIENT_STATUSES.has(error.status) ? { retry: true, ...afterOf(error) } : { retry: false };
  return { retry: error instanceof NetworkError && error.code !== undefined && TRANSIENT_CODES.has(error.code) };
}

/** Whether an attempt of a call that must not be applied twice is worth another: only if the API cannot have acted on it. */
export function onceOnlyVerdict(error: unknown): Verdict {
  if (error instanceof ApiError) return NOT_ACTED_ON.has(error.status) ? { retry: true, ...afterOf(error) } : { retry: false };
  return error instanceof NetworkError && !error.sent ? idempotentVerdict(error) : { retry: false };
}

/**
 * Reading the turn is also tried again on a 409: the API answers it while the turn is still
 * `queued` (it records the sandbox's start once the launch returns, and the sandbox can be
 * quicker); a final turn answers 401. The API did answer, so it is not polled at the bridge's pace.
 */
export function turnReadVerdict(error: unknown): Verdict {
  return error instanceof ApiError && error.status === 409 ? { retry: true, afterMs: 50 } : idempotentVerdict(error);
}

const afterOf = (error: ApiError) => (error.retryAfterMs === undefined ? {} : { afterMs: error.retryAfterMs });

interface Answer {
  status: number;
  body: Buffer;
}

interface Call {
  method: string;
  path: string;
  /** Kept whole so that an attempt can be repeated. */
  body?: { data: string | Buffer; type: string };
  policy: RetryPolicy;
  verdict: (error: unknown) => Verdict;
  /** The largest answer read. */
  maxAnswerBytes?: number;
}

/**
 * The runner's only channel to the world: the API, authenticated with the turn token. Every call
 * is retried on transient failures as far as a replay is safe: the turn, the state and the result
 * are idempotent on the API's side; progress is sent again only when it cannot have arrived.
 * Plain node:http rather than fetch: it starts ~25 ms sooner, and every turn pays that.
 */
export class RunnerApi {
  private contacted = false;

  constructor(
    private readonly apiUrl: string,
    private readonly turnId: string,
    private readonly token: string,
    private readonly clock?: Clock,
  ) {}

  get modelBaseUrl(): string {
    return runnerUrl(this.apiUrl, runnerPaths.modelBase).toString();
  }

  async getTurn(): Promise<RunnerTurn> {
    const answer = await this.call({ method: 'GET', path: runnerPaths.turn(this.turnId), policy: LATER_CALL, verdict: turnReadVerdict });
    // The API is trusted and validates what it sends; the runner skips zod to start faster.
    return JSON.parse(answer.body.toString('utf8')) as RunnerTurn;
  }

  /**
   * The previous state archive, or undefined when there is none. It is read whole (at most
   * `maxBytes`, what the API stores) so that a download broken off halfway is simply done again.
   */
  async getState(maxBytes: number): Promise<Buffer | undefined> {
    const answer = await this.call({
      method: 'GET',
      path: runnerPaths.state(this.turnId),
      policy: LATER_CALL,
      verdict: idempotentVerdict,
      maxAnswerBytes: maxBytes,
    });
    return answer.status === 204 ? undefined : answer.body;
  }

  /** Uploading the same archive again replaces it with itself. */
  async putState(archive: Buffer): Promise<void> {
    const body = { data: archive, type: 'application/gzip' };
    await this.call({ method: 'PUT', path: runnerPaths.state(this.turnId), body, policy: LATER_CALL, verdict: idempotentVerdict });
  }

  async postEvents(events: AgentEvent[]): Promise<void> {
    const body = { data: JSON.stringify({ events }), type: 'application/json' };
    await this.call({ method: 'POST', path: runnerPaths.events(this.turnId), body, policy: PROGRESS_CALL, verdict: onceOnlyVerdict });
  }

  /**
   * The API takes a turn's result once and answers the same result again with the turn's final
   * state; a result after the turn ended otherwise (cancelled, timed out) is a 409 ApiError.
   */
  async postResult(result: RunnerResult): Promise<{ status: string }> {
    const body = { data: JSON.stringify(result), type: 'application/json' };
    const answer = await this.call({ method: 'POST', path: runnerPaths.result(this.turnId), body, policy: RESULT_CALL, verdict: idempotentVerdict });
    return JSON.parse(answer.body.toString('utf8')) as { status: string };
  }

  private async call(call: Call): Promise<Answer> {
    // Whatever the call, the first one meets the network as the sandbox starts: see FIRST_CONTACT.
    const policy = this.contacted ? call.policy : FIRST_CONTACT;
    const answer = await withRetries(() => once(this.apiUrl, this.token, call), call.verdict, policy, this.clock);
    this.contacted = true;
    return answer;
  }
}

/** The turn a warm sandbox was claimed by, with the turn's token. */
export interface ClaimedTurn {
  turn: RunnerTurn;
  token: string;
}

/**
 * A warm sandbox's wait for its turn: it asks with its pool token, the API holds each ask until a
 * turn claims the sandbox or a while has passed (then it asks again). Undefined when no turn will
 * come. Asking again is safe: the API answers the same sandbox with the same turn.
 */
export async function claimTurn(apiUrl: string, sandboxId: string, poolToken: string, clock?: Clock): Promise<ClaimedTurn | undefined> {
  const call: Call = { method: 'POST', path: runnerPaths.warmClaim(sandboxId), policy: LATER_CALL, verdict: idempotentVerdict };
  for (let policy = FIRST_CONTACT; ; policy = LATER_CALL) {
    const answer = await withRetries(() => once(apiUrl, poolToken, call), call.verdict, policy, clock);
    // The API is trusted and validates what it sends; the runner skips zod to start faster.
    const claim = JSON.parse(answer.body.toString('utf8')) as WarmClaimAnswer;
    if (claim.claim === 'turn') return { turn: claim.turn, token: claim.turnToken };
    if (claim.claim === 'gone') return undefined;
  }
}

/** One attempt of a call to the API, with the credential given. */
function once(apiUrl: string, token: string, { method, path, body, maxAnswerBytes = 1024 * 1024 }: Call): Promise<Answer> {
  const url = runnerUrl(apiUrl, path);
  const headers: Record<string, string> = { authorization: `Bearer ${token}` };
  if (body !== undefined) {
    headers['content-type'] = body.type;
    headers['content-length'] = String(Buffer.byteLength(body.data));
  }
  const client = url.protocol === 'https:' ? https : http;
  return new Promise<Answer>((resolve, reject) => {
    // 'finish': the whole request is with the connection. Before it, the API cannot have it all.
    let sent = false;
    const fail = (error: Error) => {
      const code = (error as NodeJS.ErrnoException).code;
      reject(
        error instanceof ApiError || error instanceof NetworkError ? error : new NetworkError(code, sent, `${method} ${path}: ${error.message}`),
      );
    };
    const request = client.request(url, { method, headers }, (response) => {
      const status = response.statusCode ?? 0;
      const chunks: Buffer[] = [];
      let bytes = 0;
      response.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        if (bytes > maxAnswerBytes) request.destroy(new Error(`the answer is over ${maxAnswerBytes} bytes`));
        else chunks.push(chunk);
      });
      response.once('error', fail);
      response.once('end', () => {
        const data = Buffer.concat(chunks);
        if (status >= 200 && status < 300) return resolve({ status, body: data });
        const retryAfter = retryAfterMs(response.headers['retry-after']);
        reject(new ApiError(status, `${method} ${path}: ${status} ${data.toString('utf8').slice(0, 500)}`, retryAfter));
      });
    });
    request.once('finish', () => (sent = true));
    request.once('error', fail);
    request.once('socket', (socket) => {
      if (!socket.connecting) return;
      const timer = setTimeout(
        () => request.destroy(Object.assign(new Error(`not connected within ${CONNECT_TIMEOUT_MS} ms`), { code: 'ETIMEDOUT' })),
        CONNECT_TIMEOUT_MS,
      );
      socket.once('connect', () => clearTimeout(timer));
      request.once('close', () => clearTimeout(timer));
    });
    request.setTimeout(IDLE_TIMEOUT_MS, () =>
      request.destroy(Object.assign(new Error(`no answer within ${IDLE_TIMEOUT_MS} ms`), { code: 'ETIMEDOUT' })),
    );
    request.end(body?.data);
  });
}
