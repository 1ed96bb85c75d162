import { FINAL_STATUSES, type TurnStatus } from '../contract/turn.js';

/**
 * The turn state machine: queued -> starting -> running -> one final state. Final states never
 * change; any unfinished state may end early (a launch failure, a timeout, a cancel).
 */
const NEXT: Record<TurnStatus, readonly TurnStatus[]> = {
  queued: ['starting', ...FINAL_STATUSES],
  starting: ['running', ...FINAL_STATUSES],
  running: FINAL_STATUSES,
  succeeded: [],
  failed: [],
  cancelled: [],
  timed_out: [],
};

/** The states a turn may be in for a move to `to`: the "from" of a compare-and-set. */
export function statesBefore(to: TurnStatus): TurnStatus[] {
  return (Object.keys(NEXT) as TurnStatus[]).filter((from) => NEXT[from].includes(to));
}
