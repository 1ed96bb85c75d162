import { z } from 'zod';

/** One step of a turn as its watchers see it; `seq` orders them and resumes a dropped stream. */
export const TurnEventRecord = z.object({
  turnId: z.string(),
  seq: z.number().int(),
  type: z.string(),
  data: z.record(z.string(), z.unknown()),
  at: z.string(),
});
export type TurnEvent = z.infer<typeof TurnEventRecord>;

/** An event as a writer hands it over; the store numbers and dates it. */
export type NewTurnEvent = Pick<TurnEvent, 'type' | 'data'>;

/** A stored event as both stores read it back. */
export const turnEventOf = (stored: unknown): TurnEvent => TurnEventRecord.parse(stored);
