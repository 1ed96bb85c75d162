import { eventsDroppedEvent } from '../contract/events.js';
import { TurnEventType } from '../contract/event-types.js';
import type { NewTurnEvent } from './turn-event.js';

/**
 * How much progress one turn may store: a sandbox decides what it posts, and without a budget
 * one turn could fill the store. Past the budget events are dropped, and the stream says so
 * once, with one `events_dropped` event.
 */
export interface EventBudget {
  maxEvents: number;
  maxBytes: number;
}

/** What a turn has stored so far. */
export interface EventTally {
  events: number;
  bytes: number;
  /** Whether events were dropped already (the notice is in the stream). */
  capped: boolean;
}

/** What a store keeps when no budget is given. */
export const NO_EVENT_BUDGET: EventBudget = { maxEvents: Infinity, maxBytes: Infinity };

const eventBytes = (event: NewTurnEvent): number => Buffer.byteLength(JSON.stringify(event.data), 'utf8');

/**
 * Text deltas only preview what `text` events then hold whole: they may use half the budget,
 * and past it they are left out without a notice, so that the steps always have the other half.
 */
const DELTA_SHARE = 0.5;

/**
 * The events that fit, in order (the first that does not fit ends them), plus the notice when
 * this batch is the first to be cut; and the tally after them.
 */
export function withinBudget(tally: EventTally, events: readonly NewTurnEvent[], budget: EventBudget): { kept: NewTurnEvent[]; tally: EventTally } {
  if (tally.capped) return { kept: [], tally };
  const kept: NewTurnEvent[] = [];
  let { events: count, bytes } = tally;
  for (const event of events) {
    const size = eventBytes(event);
    if (event.type === TurnEventType.text_delta) {
      if (count + 1 > budget.maxEvents * DELTA_SHARE || bytes + size > budget.maxBytes * DELTA_SHARE) continue;
    } else if (count + 1 > budget.maxEvents || bytes + size > budget.maxBytes) {
      const notice = eventsDroppedEvent({
        message: `this turn's progress is over its budget of ${budget.maxEvents} events or ${budget.maxBytes} bytes: later steps are not shown`,
        maxEvents: budget.maxEvents,
        maxBytes: budget.maxBytes,
      });
      return { kept: [...kept, notice], tally: { events: count + 1, bytes: bytes + eventBytes(notice), capped: true } };
    }
    kept.push(event);
    count += 1;
    bytes += size;
  }
  return { kept, tally: { events: count, bytes, capped: false } };
}
