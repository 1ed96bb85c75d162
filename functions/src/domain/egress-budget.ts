import { ledgerAt, type UserLedger } from './quota.js';

/**
 * What a sandbox's connections out may use: each store applies these decisions inside its own
 * transaction, so that connections of one turn arriving at different instances at once are all
 * counted.
 */
export interface EgressCaps {
  /** Connections a turn may open (those the policy refuses count too: each cost a decision). */
  maxConnectionsPerTurn: number;
  /** Bytes a turn's connections may carry, both ways together. */
  maxBytesPerTurn: number;
  /** Bytes a user's connections may carry in a UTC day; null: no limit. */
  dailyBytesPerUser: number | null;
}

/** What a turn's connections have used so far, as its record keeps it. */
export interface TurnEgress {
  egressConnections: number;
  egressBytes: number;
}

/** What is left of one byte cap, and why a connection is cut past it. */
export interface ByteAllowance {
  bytes: number;
  over: string;
}

export type EgressAdmission =
  /** What is left of the turn's bytes and of its user's day (Infinity with no daily limit), as recorded. */
  { admitted: true; turn: ByteAllowance; day: ByteAllowance } | { admitted: false; reason: string };

/** Whether one more connection may open, given what the turn and its user have used; the connection counts only when admitted. */
export function admitEgress(turn: TurnEgress, ledger: UserLedger | undefined, caps: EgressCaps, now: Date): EgressAdmission {
  if (turn.egressConnections >= caps.maxConnectionsPerTurn) {
    return { admitted: false, reason: `this turn has opened its ${caps.maxConnectionsPerTurn} connections out; no more are allowed` };
  }
  const turnLeft = caps.maxBytesPerTurn - turn.egressBytes;
  if (turnLeft <= 0) return { admitted: false, reason: `this turn has carried its ${caps.maxBytesPerTurn} bytes out and in` };
  const today = ledgerAt(ledger, now);
  const dayLeft = caps.dailyBytesPerUser === null ? Number.POSITIVE_INFINITY : caps.dailyBytesPerUser - today.egressBytes;
  if (dayLeft <= 0) {
    return {
      admitted: false,
      reason: `the daily egress budget of ${caps.dailyBytesPerUser} bytes is used up (${today.egressBytes} carried today, UTC)`,
    };
  }
  return {
    admitted: true,
    turn: { bytes: turnLeft, over: `cut: this turn went over its ${caps.maxBytesPerTurn} bytes out and in` },
    day: { bytes: dayLeft, over: `cut: the daily egress budget of ${caps.dailyBytesPerUser} bytes is used up` },
  };
}

/** The ledger with a connection's bytes added (on the day it ended). */
export function spendEgress(ledger: UserLedger | undefined, bytes: number, now: Date): UserLedger {
  const today = ledgerAt(ledger, now);
  return { ...today, egressBytes: today.egressBytes + bytes };
}
