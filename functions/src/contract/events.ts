import { z } from 'zod';
import { TurnView } from './api.js';
import type { AgentEvent } from './runner.js';
import { TurnStatus } from './turn.js';
import { RUNNER_LIMITS } from './runner-limits.js';

/*
 * What a turn's event stream carries, each type with its data: `status` (starting, running), the
 * agent's steps as the runner posts them (`text_delta` as the answer streams, `text`, `tool_use`, `tool_result`), `events_dropped`
 * once if the turn's progress went over its budget (later steps are not stored), `egress` for
 * each connection the sandbox's tools tried to open out (at its end, or at its refusal), and one final
 * `result` holding the turn. Their names as zod-free values are in event-types.ts.
 */

export const StatusData = z.object({ status: TurnStatus });
export type StatusData = z.infer<typeof StatusData>;
export const TextData = z.object({ text: z.string().max(RUNNER_LIMITS.eventTextChars) });
export type TextData = z.infer<typeof TextData>;
/**
 * Text of the agent's answer as the model produces it, to be appended to what came since the last
 * `text` event; the next `text` event holds the whole block, and replaces what its deltas built.
 * Deltas are a preview: past half the turn's event budget they stop (silently), and `text` and
 * `result` stay the source of truth.
 */
export const TextDeltaData = z.object({ text: z.string().min(1).max(RUNNER_LIMITS.eventTextChars) });
export type TextDeltaData = z.infer<typeof TextDeltaData>;
export const ToolUseData = z.object({ name: z.string().max(RUNNER_LIMITS.toolNameChars), summary: z.string().max(RUNNER_LIMITS.summaryChars) });
export type ToolUseData = z.infer<typeof ToolUseData>;
export const ToolResultData = z.object({ summary: z.string().max(RUNNER_LIMITS.summaryChars), isError: z.boolean() });
export type ToolResultData = z.infer<typeof ToolResultData>;
export const EventsDroppedData = z.object({ message: z.string(), maxEvents: z.number(), maxBytes: z.number() });
export type EventsDroppedData = z.infer<typeof EventsDroppedData>;
export const EgressData = z.object({
  host: z.string().max(253),
  port: z.number().int(),
  allowed: z.boolean(),
  /** Why it was refused, or why an allowed connection failed or was cut. */
  reason: z.string().optional(),
  /** Bytes the sandbox sent, and received, through this connection. */
  bytesOut: z.number(),
  bytesIn: z.number(),
  durationMs: z.number(),
});
export type EgressData = z.infer<typeof EgressData>;

/** An event as its writer makes it: its type and data (the store numbers and dates it). */
export const TurnEventBody = z.discriminatedUnion('type', [
  z.object({ type: z.literal('status'), data: StatusData }),
  z.object({ type: z.literal('text'), data: TextData }),
  z.object({ type: z.literal('text_delta'), data: TextDeltaData }),
  z.object({ type: z.literal('tool_use'), data: ToolUseData }),
  z.object({ type: z.literal('tool_result'), data: ToolResultData }),
  z.object({ type: z.literal('events_dropped'), data: EventsDroppedData }),
  z.object({ type: z.literal('egress'), data: EgressData }),
  z.object({ type: z.literal('result'), data: TurnView }),
]);
export type TurnEventBody = z.infer<typeof TurnEventBody>;
export type TurnEventType = TurnEventBody['type'];
export type TurnEventOf<T extends TurnEventType> = Extract<TurnEventBody, { type: T }>;

/** One event of the stream as clients see it; `seq` is its SSE id, where a reconnection resumes. */
export const TurnEventView = z.object({ seq: z.number(), at: z.string() }).and(TurnEventBody);
export type TurnEventView = z.infer<typeof TurnEventView>;

export const statusEvent = (status: TurnStatus): TurnEventOf<'status'> => ({ type: 'status', data: { status } });

export const resultEvent = (turn: TurnView): TurnEventOf<'result'> => ({ type: 'result', data: turn });

export const egressEvent = (data: EgressData): TurnEventOf<'egress'> => ({ type: 'egress', data });

export const eventsDroppedEvent = (data: EventsDroppedData): TurnEventOf<'events_dropped'> => ({ type: 'events_dropped', data });

/** A step the runner posted, as its watchers see it: the runner's fields under `data`. */
export function agentStepEvent(step: AgentEvent): TurnEventBody {
  switch (step.type) {
    case 'text': {
      const { type, ...data } = step;
      return { type, data };
    }
    case 'text_delta': {
      const { type, ...data } = step;
      return { type, data };
    }
    case 'tool_use': {
      const { type, ...data } = step;
      return { type, data };
    }
    case 'tool_result': {
      const { type, ...data } = step;
      return { type, data };
    }
  }
}
