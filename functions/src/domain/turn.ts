import { z } from 'zod';
import { AgentOptions } from '../contract/api.js';
import { LimitName } from '../contract/limits.js';
import { emptyUsage, TurnStatus, Usage } from '../contract/turn.js';
import { isFinal } from './turn-state.js';

/**
 * A turn as it is stored: one prompt of a conversation, and what became of it. Both stores parse
 * what they read with this schema. A field's default is what a turn has before anything set it:
 * newTurn() fills it in, and a row or document written before the field existed reads as it.
 */
export const TurnRecord = z.object({
  id: z.string(),
  conversationId: z.string(),
  userId: z.string(),
  prompt: z.string(),
  /** The options the turn runs with: its conversation's, with the turn's own overrides. */
  options: AgentOptions.default({}),
  status: TurnStatus.default('queued'),
  /** Why a turn ended the way it did, in words; null while running and on a success, unless it stopped early (maxTurns). */
  reason: z.string().nullable().default(null),
  text: z.string().nullable().default(null),
  usage: Usage.default(emptyUsage),
  costUsd: z.number().default(0),
  createdAt: z.string(),
  startedAt: z.string().nullable().default(null),
  finishedAt: z.string().nullable().default(null),
  deadlineAt: z.string(),
  /** BlobStore key of the state archive the runner uploaded during this turn, if any. */
  uploadedStateKey: z.string().nullable().default(null),
  /** The client's Idempotency-Key: a retried POST with the same key gets this turn back. */
  idempotencyKey: z.string().nullable().default(null),
  /** The launcher's name for the turn's sandbox (a Cloud Run execution), once started. */
  sandboxRef: z.string().nullable().default(null),
  /** The fair-use limit that stopped the turn (a daily budget), if one did. */
  stoppedBy: LimitName.nullable().default(null),
  /**
   * A digest of the runner's result that ended the turn, if one did: the same result posted again
   * is answered with the turn as it ended, another one refused.
   */
  resultDigest: z.string().nullable().default(null),
  /**
   * A final turn whose sandbox may not be gone yet (in the cloud a turn is made final before its
   * execution is stopped): it still counts against the running limits until that is seen.
   */
  holdsSandbox: z.boolean().default(false),
  /** Connections out the turn's sandbox opened, and the bytes they carried both ways (domain/egress-budget.ts). */
  egressConnections: z.number().int().nonnegative().default(0),
  egressBytes: z.number().int().nonnegative().default(0),
});
export type Turn = z.infer<typeof TurnRecord>;

/** What a turn is made with; everything else starts at its default. */
export type NewTurn = z.input<typeof TurnRecord>;

/** The one way a turn record is made: the fields given, the others at their defaults. */
export const newTurn = (fields: NewTurn): Turn => TurnRecord.parse(fields);

/**
 * The fields a turn is made with and keeps. Usage, cost and egress change only by addition (the
 * store's addUsage, openEgress and recordEgress), never by a patch, so that concurrent model calls
 * and connections all count.
 */
type Fixed =
  | 'id'
  | 'conversationId'
  | 'userId'
  | 'prompt'
  | 'options'
  | 'createdAt'
  | 'deadlineAt'
  | 'idempotencyKey'
  | 'usage'
  | 'costUsd'
  | 'egressConnections'
  | 'egressBytes';

/** What an update of a turn may change. */
export type TurnPatch = Partial<Omit<Turn, Fixed>>;

/** The one sum of two usages. */
export const addUsage = (a: Usage, b: Usage): Usage => ({
  inputTokens: a.inputTokens + b.inputTokens,
  outputTokens: a.outputTokens + b.outputTokens,
  cacheCreationInputTokens: a.cacheCreationInputTokens + b.cacheCreationInputTokens,
  cacheReadInputTokens: a.cacheReadInputTokens + b.cacheReadInputTokens,
  modelCalls: a.modelCalls + b.modelCalls,
});

/** Whether a turn counts against the running limits: unfinished, or final with a sandbox not seen gone. */
export const holdsSlot = (turn: Pick<Turn, 'status' | 'holdsSandbox'>): boolean => !isFinal(turn.status) || turn.holdsSandbox;
