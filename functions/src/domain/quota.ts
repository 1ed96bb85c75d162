import { z } from 'zod';
import type { LimitName } from '../contract/limits.js';
import type { Usage } from '../contract/turn.js';

/**
 * Fair use: what a user may start and spend. The decisions live here, once; each store applies
 * them inside its own transaction, so that racing requests cannot both take the last slot.
 */

export interface Quota {
  /** Turns of one user unfinished at once. */
  runningTurnsPerUser: number;
  /** Turns one user may start in any 60 s. */
  turnsPerMinute: number;
  /** Changes of workspace files (each writes a new state) one user may make in any 60 s. */
  fileChangesPerMinute: number;
  /** Sandboxes running at once across all users (protects the Cloud Run quota). */
  runningSandboxes: number;
  /** Sandboxes started in any 60 s across all users (Cloud Run's per-minute runJob quota). */
  sandboxStartsPerMinute: number;
  /** Tokens one user may spend in a UTC day (input + cache writes + output); null: no limit. */
  dailyTokens: number | null;
  /** Model cost one user may spend in a UTC day, in USD; null: no limit. */
  dailyCostUsd: number | null;
  /** Bytes one user's sandboxes may carry out and in through egress in a UTC day; null: no limit. */
  dailyEgressBytes: number | null;
}

/** No limits: the store still keeps the ledger (imports, tests of other rules). */
export const NO_LIMITS: Quota = {
  runningTurnsPerUser: Number.POSITIVE_INFINITY,
  turnsPerMinute: Number.POSITIVE_INFINITY,
  fileChangesPerMinute: Number.POSITIVE_INFINITY,
  runningSandboxes: Number.POSITIVE_INFINITY,
  sandboxStartsPerMinute: Number.POSITIVE_INFINITY,
  dailyTokens: null,
  dailyCostUsd: null,
  dailyEgressBytes: null,
};

export interface LimitHit {
  limit: LimitName;
  /** The limit's value. */
  max: number;
  retryAfterSeconds: number;
  message: string;
}

/** One user's spending on one UTC day, and the starts of the last minute; it outlives deleted conversations. */
export const UserLedger = z.object({
  day: z.string(),
  turns: z.number().int().nonnegative(),
  tokens: z.number().int().nonnegative(),
  costUsd: z.number().nonnegative(),
  /** Bytes the user's connections out carried, both ways (a ledger written before egress existed has none). */
  egressBytes: z.number().int().nonnegative().default(0),
  /** ISO times of the user's starts (turns and empty conversations) within the last minute, oldest first. */
  recentStarts: z.array(z.string()),
  /** ISO times of the user's changes of workspace files within the last minute (a ledger written before them has none). */
  recentChanges: z.array(z.string()).default([]),
});
export type UserLedger = z.infer<typeof UserLedger>;

const MINUTE_MS = 60_000;
/** A guess: how soon a running turn of the user (or anyone, for the global cap) may be over. */
const RUNNING_RETRY_SECONDS = 5;

const utcDay = (at: Date): string => at.toISOString().slice(0, 10);

/** The times of a minute window as they stand at `now`: older ones are dropped. */
const withinMinute = (times: readonly string[], now: Date): string[] => times.filter((at) => now.getTime() - Date.parse(at) < MINUTE_MS);

/** When the UTC day after `day` (YYYY-MM-DD) begins: when a daily budget is whole again. */
export const nextUtcDay = (day: string): Date => new Date(Date.parse(`${day}T00:00:00.000Z`) + 24 * 3600_000);

/** Whole seconds, at least one, from `now` to the next UTC day. */
export const secondsUntilNextUtcDay = (now: Date): number => Math.max(1, Math.ceil((nextUtcDay(utcDay(now)).getTime() - now.getTime()) / 1000));

/** The ledger as it stands at `now`: a new day starts from zero; starts older than a minute are dropped. */
export function ledgerAt(ledger: UserLedger | undefined, now: Date): UserLedger {
  const day = utcDay(now);
  const recentStarts = withinMinute(ledger?.recentStarts ?? [], now);
  const recentChanges = withinMinute(ledger?.recentChanges ?? [], now);
  if (ledger === undefined || ledger.day !== day) return { day, turns: 0, tokens: 0, costUsd: 0, egressBytes: 0, recentStarts, recentChanges };
  return { ...ledger, recentStarts, recentChanges };
}

/** The tokens a budget counts: what the model read fresh or wrote; cache reads are left to the cost budget. */
const budgetTokens = (usage: Usage): number => usage.inputTokens + usage.cacheCreationInputTokens + usage.outputTokens;

/** Which daily budget, if any, the ledger has used up. */
export function budgetHit(ledger: UserLedger, quota: Quota, now: Date): LimitHit | undefined {
  const retryAfterSeconds = secondsUntilNextUtcDay(now);
  if (quota.dailyTokens !== null && ledger.tokens >= quota.dailyTokens) {
    return {
      limit: 'daily_tokens',
      max: quota.dailyTokens,
      retryAfterSeconds,
      message: `the daily budget of ${quota.dailyTokens} tokens is used up (${ledger.tokens} used today, UTC)`,
    };
  }
  if (quota.dailyCostUsd !== null && ledger.costUsd >= quota.dailyCostUsd) {
    return {
      limit: 'daily_cost',
      max: quota.dailyCostUsd,
      retryAfterSeconds,
      message: `the daily budget of $${quota.dailyCostUsd.toFixed(2)} is used up ($${ledger.costUsd.toFixed(4)} used today, UTC)`,
    };
  }
  return undefined;
}

/** ISO times of everyone's sandbox starts within the last minute, oldest first: one record for the whole service. */
export const RecentStarts = z.array(z.string());

/** Whole seconds, at least one, until the oldest of a full minute window leaves it. */
const untilOldestLeaves = (starts: readonly string[], now: Date): number =>
  Math.max(1, Math.ceil((Date.parse(starts[0] ?? now.toISOString()) + MINUTE_MS - now.getTime()) / 1000));

/** Whether the user started as many turns and conversations in the last minute as they may. */
function startsPerMinuteHit(today: UserLedger, quota: Quota, now: Date): LimitHit | undefined {
  return minuteFull(today.recentStarts, quota.turnsPerMinute, now, 'turns_per_minute', 'turn(s) or new conversation(s) started');
}

/** A minute window that holds `max` times already, as the limit `limit` refuses one more. */
function minuteFull(times: readonly string[], max: number, now: Date, limit: LimitName, what: string): LimitHit | undefined {
  if (times.length < max) return undefined;
  return { limit, max, retryAfterSeconds: untilOldestLeaves(times, now), message: `more than ${max} ${what} in the last minute` };
}

/** A minute window with `now` in it, holding no more than its limit counts. */
const withNow = (times: readonly string[], max: number, now: Date): string[] => [...times, now.toISOString()].slice(-max);

/**
 * Whether a user may create an empty conversation now: each is a start in their last minute
 * like a turn's (not a turn of their day), so that a loop cannot fill the store with them.
 */
export function admitConversation(
  ledger: UserLedger | undefined,
  quota: Quota,
  now: Date,
): { admitted: true; ledger: UserLedger } | { admitted: false; hit: LimitHit } {
  const today = ledgerAt(ledger, now);
  const tooFast = startsPerMinuteHit(today, quota, now);
  if (tooFast !== undefined) return { admitted: false, hit: tooFast };
  return { admitted: true, ledger: { ...today, recentStarts: withNow(today.recentStarts, quota.turnsPerMinute, now) } };
}

/**
 * Whether a user may change their workspace files now: each change writes a whole new state (and,
 * in a versioned bucket, keeps the one it replaces), so a loop of them is held to a rate.
 */
export function admitFileChange(
  ledger: UserLedger | undefined,
  quota: Quota,
  now: Date,
): { admitted: true; ledger: UserLedger } | { admitted: false; hit: LimitHit } {
  const today = ledgerAt(ledger, now);
  const full = minuteFull(today.recentChanges, quota.fileChangesPerMinute, now, 'file_changes_per_minute', 'change(s) of workspace files');
  if (full !== undefined) return { admitted: false, hit: full };
  return { admitted: true, ledger: { ...today, recentChanges: withNow(today.recentChanges, quota.fileChangesPerMinute, now) } };
}

/**
 * Whether a user may start a turn now, given their ledger, what is running and everyone's
 * sandbox starts of the last minute; when they may, the ledger and the starts with it counted.
 */
export function admit(
  ledger: UserLedger | undefined,
  running: { user: number; everyone: number },
  quota: Quota,
  now: Date,
  serviceStarts: readonly string[] = [],
): { admitted: true; ledger: UserLedger; serviceStarts: string[] } | { admitted: false; hit: LimitHit } {
  const today = ledgerAt(ledger, now);
  if (running.user >= quota.runningTurnsPerUser) {
    return refuse(
      'running_turns',
      quota.runningTurnsPerUser,
      RUNNING_RETRY_SECONDS,
      `${quota.runningTurnsPerUser} turn(s) already running; wait for one to finish`,
    );
  }
  const tooFast = startsPerMinuteHit(today, quota, now);
  if (tooFast !== undefined) return { admitted: false, hit: tooFast };
  const overBudget = budgetHit(today, quota, now);
  if (overBudget !== undefined) return { admitted: false, hit: overBudget };
  if (running.everyone >= quota.runningSandboxes) {
    return refuse(
      'running_sandboxes',
      quota.runningSandboxes,
      RUNNING_RETRY_SECONDS,
      `the service is at its limit of ${quota.runningSandboxes} running sandboxes`,
    );
  }
  const service = admitSandboxStart(serviceStarts, quota.sandboxStartsPerMinute, now);
  if (!service.admitted) return service;
  const starts = withNow(today.recentStarts, quota.turnsPerMinute, now);
  return { admitted: true, ledger: { ...today, turns: today.turns + 1, recentStarts: starts }, serviceStarts: service.serviceStarts };
}

/**
 * Whether the service may start one more sandbox now, given everyone's starts of the last minute
 * (Cloud Run's per-minute runJob quota); when it may, the starts with it counted.
 */
export function admitSandboxStart(
  serviceStarts: readonly string[],
  perMinute: number,
  now: Date,
): { admitted: true; serviceStarts: string[] } | { admitted: false; hit: LimitHit } {
  const everyones = withinMinute(serviceStarts, now);
  if (everyones.length >= perMinute) {
    return refuse(
      'sandbox_starts_per_minute',
      perMinute,
      untilOldestLeaves(everyones, now),
      `the service started its limit of ${perMinute} sandboxes in the last minute`,
    );
  }
  // Kept only when counted: with no limit the record would grow with every start.
  return { admitted: true, serviceStarts: Number.isFinite(perMinute) ? [...everyones, now.toISOString()] : [] };
}

/** The ledger with a model call's metered usage added (on the day it was metered). */
export function spend(ledger: UserLedger | undefined, usage: Usage, costUsd: number, now: Date): UserLedger {
  const today = ledgerAt(ledger, now);
  return { ...today, tokens: today.tokens + budgetTokens(usage), costUsd: today.costUsd + costUsd };
}

function refuse(limit: LimitName, max: number, retryAfterSeconds: number, message: string): { admitted: false; hit: LimitHit } {
  return { admitted: false, hit: { limit, max, retryAfterSeconds, message } };
}
