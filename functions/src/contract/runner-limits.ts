/**
 * The largest pieces the API takes from a runner (runner.ts's schemas), in UTF-16 code units
 * (a string's length; the schemas count code points, which are never more). The runner
 * cuts what it sends to them: anything longer is refused whole, and a refused result loses the
 * turn's real end. Imports nothing, so that the runner can use it without zod.
 */
export const RUNNER_LIMITS = {
  /** A failed result's reason. */
  reasonChars: 2_000,
  /** One `text` progress event. */
  eventTextChars: 20_000,
  /** A `tool_use` event's tool name. */
  toolNameChars: 200,
  /** A `tool_use` or `tool_result` event's summary. */
  summaryChars: 500,
  /** Progress events in one post. */
  eventsPerBatch: 200,
  /**
   * The longest answer kept: a turn lives in one Firestore document (1 MiB) with its prompt, and
   * its result event repeats it. A longer answer is cut by the API, saying so.
   */
  resultTextChars: 100_000,
} as const;

const isHighSurrogate = (code: number) => code >= 0xd800 && code <= 0xdbff;
const isLowSurrogate = (code: number) => code >= 0xdc00 && code <= 0xdfff;

/** At most the first `n` code units of `text`, never half a character (a lone surrogate stores differently everywhere). */
export function headOf(text: string, n: number): string {
  if (text.length <= n) return text;
  return text.slice(0, n > 0 && isHighSurrogate(text.charCodeAt(n - 1)) ? n - 1 : n);
}

/** At most the last `n` code units of `text`, never half a character. */
export function tailOf(text: string, n: number): string {
  if (text.length <= n) return text;
  if (n <= 0) return '';
  const start = text.length - n;
  return text.slice(isLowSurrogate(text.charCodeAt(start)) ? start + 1 : start);
}

/** `text` if it fits in `max` code units, else its start with an ellipsis, at most `max` in all. */
export function cutToLimit(text: string, max: number): string {
  return text.length <= max ? text : `${headOf(text, max - 1)}…`;
}
