import { z } from 'zod';
import { TurnEventType } from '../contract/event-types.js';
import type { TurnEventBody } from '../contract/events.js';

/** An event as a writer hands it over (made through contract/events.ts); the store numbers and dates it. */
export type NewTurnEvent = TurnEventBody;

/** One step of a turn as its watchers see it; `seq` orders them and resumes a dropped stream. */
export type TurnEvent = { turnId: string; seq: number; at: string } & TurnEventBody;

/** The event written with a turn's final state, holding the turn: the last of its stream. */
export type ResultEvent = Extract<TurnEvent, { type: typeof TurnEventType.result }>;

export const isResult = (event: TurnEvent): event is ResultEvent => event.type === TurnEventType.result;

/**
 * A stored event as both stores read it back: where it is, and one of the stream's types. Its
 * data is what this service's own writers made, typed by events.ts, and is not parsed again: a
 * result event keeps the turn's view as it was then, and a view field added since would make
 * every earlier result unreadable.
 */
const TurnEventRecord = z.object({
  turnId: z.string(),
  seq: z.number().int(),
  type: z.enum(TurnEventType),
  data: z.record(z.string(), z.unknown()),
  at: z.string(),
});

export const turnEventOf = (stored: unknown): TurnEvent => TurnEventRecord.parse(stored) as TurnEvent;
