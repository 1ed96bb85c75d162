import { ApiError, errorOf } from './api.js';
import { SignInEnded } from './errors.js';

/** One Server-Sent Event: its id (the last one seen), its type and its data lines joined. */
export interface ServerEvent {
  id: string | undefined;
  type: string;
  data: string;
}

/**
 * Splits an event stream into events, following the fields of the WHATWG rules that matter here:
 * `id`, `event`, `data`, `retry` and comments. EventSource would do this, but it cannot send the
 * Authorization or X-User-Id header.
 */
export class EventStreamParser {
  /** The id of the last event: where a reconnection resumes (Last-Event-ID). */
  lastEventId: string | undefined;
  /** The reconnection delay the server asked for. */
  retryMs: number | undefined;
  private buffer = '';
  private data: string[] = [];
  private type = '';
  /** The id of the event being received: it counts only once the whole event has arrived. */
  private pendingId: string | undefined;

  push(chunk: string): ServerEvent[] {
    this.buffer += chunk;
    const events: ServerEvent[] = [];
    for (let end = /\r\n|\r|\n/.exec(this.buffer); end !== null; end = /\r\n|\r|\n/.exec(this.buffer)) {
      // A lone \r at the end may be the first half of \r\n: wait for the next chunk.
      if (end[0] === '\r' && end.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, end.index);
      this.buffer = this.buffer.slice(end.index + end[0].length);
      const event = this.line(line);
      if (event !== undefined) events.push(event);
    }
    return events;
  }

  /** Drops a half-received event, as a new connection must (the id seen so far stays). */
  discardPending(): void {
    this.buffer = '';
    this.data = [];
    this.type = '';
    this.pendingId = this.lastEventId;
  }

  private line(line: string): ServerEvent | undefined {
    if (line === '') {
      this.lastEventId = this.pendingId;
      const event = this.data.length === 0 ? undefined : { id: this.lastEventId, type: this.type || 'message', data: this.data.join('\n') };
      this.data = [];
      this.type = '';
      return event;
    }
    if (line.startsWith(':')) return undefined;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const raw = colon < 0 ? '' : line.slice(colon + 1);
    const value = raw.startsWith(' ') ? raw.slice(1) : raw;
    if (field === 'data') this.data.push(value);
    else if (field === 'event') this.type = value;
    else if (field === 'id' && !value.includes('\0')) this.pendingId = value;
    else if (field === 'retry' && /^\d+$/.test(value)) this.retryMs = Number(value);
    return undefined;
  }
}

export interface FollowOptions {
  url: string;
  /**
   * Makes each connection, with the credentials current at that moment (a reconnection may need a
   * renewed ID token): ApiClient.send.
   */
  send: (url: string, init: RequestInit) => Promise<Response>;
  onEvent: (event: ServerEvent) => void;
  /** The event after which the stream is complete (the turn's `result`). */
  isLast: (event: ServerEvent) => boolean;
  signal: AbortSignal;
  /** Connections in a row that may fail (without delivering an event) before giving up. */
  maxFailures?: number;
}

const DEFAULT_RETRY_MS = 2000;

const wait = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });

/**
 * Reads an event stream until its last event, reconnecting with Last-Event-ID when the connection
 * drops, so no event is lost or repeated. Resolves at the last event or when `signal` aborts;
 * rejects with ApiError when the service refuses the stream or stays unreachable.
 */
export async function followEvents(options: FollowOptions): Promise<void> {
  const { signal } = options;
  const parser = new EventStreamParser();
  let failures = 0;
  while (!signal.aborted) {
    const resumeFrom = parser.lastEventId;
    try {
      const response = await options.send(options.url, {
        headers: { Accept: 'text/event-stream', ...(resumeFrom === undefined ? {} : { 'Last-Event-ID': resumeFrom }) },
        cache: 'no-store',
        signal,
      });
      if (response.body === null) throw await errorOf(response);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
        for (const event of parser.push(chunk.value)) {
          failures = 0;
          options.onEvent(event);
          if (options.isLast(event)) {
            await reader.cancel().catch(() => {});
            return;
          }
        }
      }
    } catch (error) {
      if (signal.aborted) return;
      // A refusal (signed out, not found, a sign-in that cannot be renewed) will not change by
      // asking again; a lost connection or an overloaded service may.
      if (error instanceof ApiError && error.status !== undefined && error.status < 500) throw error;
      if (error instanceof SignInEnded) throw error;
    }
    failures += 1;
    if (failures >= (options.maxFailures ?? 5)) {
      throw new ApiError(undefined, 'network', 'the event stream kept dropping before the turn ended');
    }
    parser.discardPending();
    await wait(parser.retryMs ?? DEFAULT_RETRY_MS, signal);
  }
}
