/**
 * The largest pieces the API takes from a runner (runner.ts's schemas), in characters. The runner
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

/** `text` if it fits in `max` characters, else its start with an ellipsis, `max` in all. */
export function cutToLimit(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
