import { TurnStatus } from '../contract/turn.js';

/** The states a turn ends in: they never change. */
export const FinalStatus = TurnStatus.extract(['succeeded', 'failed', 'cancelled', 'timed_out']);
export type FinalStatus = (typeof FinalStatus.options)[number];

export const FINAL_STATUSES: readonly FinalStatus[] = FinalStatus.options;
export const isFinal = (status: TurnStatus): status is FinalStatus => (FINAL_STATUSES as readonly TurnStatus[]).includes(status);

/** The states of a turn that still holds its conversation (the one turn that may run in it). */
export const UNFINISHED: readonly TurnStatus[] = TurnStatus.options.filter((status) => !isFinal(status));

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
  return TurnStatus.options.filter((from) => NEXT[from].includes(to));
}

/** The "from" of a change that keeps the turn where it is (a field set while it is in `status`). */
export const stayingIn = (status: TurnStatus): readonly TurnStatus[] => [status];
