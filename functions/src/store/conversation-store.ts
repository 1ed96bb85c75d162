import type { TurnStatus, Usage } from '../contract/turn.js';
import type { Conversation, ListCursor, StateCommit } from '../domain/conversation.js';
import type { EgressAdmission, EgressCaps } from '../domain/egress-budget.js';
import type { EventBudget } from '../domain/event-budget.js';
import type { LimitHit, Quota, UserLedger } from '../domain/quota.js';
import type { NewTurnEvent, ResultEvent, TurnEvent } from '../domain/turn-event.js';
import type { Turn, TurnPatch } from '../domain/turn.js';
import type { WarmSandbox, WarmSandboxPatch } from '../domain/warm-sandbox.js';

/** What an update of a turn takes on with it, in the same transaction. */
export interface TurnUpdateExtras {
  /** The conversation takes this session and state: whoever sees the turn succeeded sees its state too. */
  commit?: StateCommit;
  /**
   * Events recorded with the change, made from the updated turn (its status or result event): a
   * watcher never sees the one without the other.
   */
  events?: (updated: Turn) => NewTurnEvent[];
}

export type StartTurnResult =
  | { started: true }
  | { started: false; activeTurnId: string }
  /** A turn with the same user and Idempotency-Key exists already: this is a retry. */
  | { started: false; existingTurnId: string }
  /** Starting it would go over one of the quota's limits. */
  | { started: false; limitHit: LimitHit };

export type CreateConversationResult = { created: true } | { created: false; limitHit: LimitHit };

export interface AddWarmSandboxOptions {
  /** When the idle ones are counted (a sandbox expiring before it is not): the pool renews ahead. */
  idleAt?: Date;
  /** The service's sandbox starts per minute (Cloud Run's runJob quota); none by default. */
  startsPerMinute?: number;
}

export type AddWarmSandboxResult = { added: true } | { added: false; poolFull: true } | { added: false; limitHit: LimitHit };

export type AdmitResult = { admitted: true } | { admitted: false; limitHit: LimitHit };

export type ReplaceStateResult =
  | { replaced: true }
  | { replaced: false; activeTurnId: string }
  /** The state is no longer the one the change was made from. */
  | { replaced: false; stateKey: string | null }
  | { replaced: false; missing: true };

export interface StartTurnOptions {
  /** The limits to judge the start by; none by default. */
  quota?: Quota;
  /** The turn's conversation is new: it is created with the turn, in the same transaction, or not at all. */
  newConversation?: Conversation;
  /** The (existing) conversation takes this title with the turn: an untitled one's first prompt names it. */
  title?: string;
}

/** What one user has spent today and has running. */
export interface UserUsage {
  ledger: UserLedger;
  runningTurns: number;
}

/**
 * Where conversations and turns live. Every method is atomic on its own; `updateTurn` is a
 * compare-and-set so that a duplicate or late writer can never overwrite a final turn.
 */
export interface ConversationStore {
  /**
   * Inserts a conversation with no turn. With a quota it is judged and counted as a start in its
   * user's last minute (admitConversation), in the same transaction; without one, neither.
   */
  createConversation(conversation: Conversation, quota?: Quota): Promise<CreateConversationResult>;
  getConversation(id: string): Promise<Conversation | undefined>;
  /** The user's conversations, most recently active first. */
  listConversations(userId: string, limit: number, after?: ListCursor): Promise<Conversation[]>;
  /**
   * Makes `to` the conversation's state in place of `from` (a client changed its files), keeping
   * its agent session: a compare-and-set, refused while a turn of the conversation is unfinished.
   */
  replaceState(conversationId: string, from: string | null, to: string): Promise<ReplaceStateResult>;
  /** Counts one change of the user's workspace files in their ledger when the quota allows it (admitFileChange). */
  admitFileChange(userId: string, quota: Quota, now: Date): Promise<AdmitResult>;
  /** Removes the conversation with its turns and events; returns every state key it referenced. */
  deleteConversation(id: string): Promise<string[]>;
  /**
   * Inserts the turn unless another turn of the conversation is unfinished, its idempotency key
   * was used, or the user or the service is at one of the quota's limits (none by default); a
   * start counts in the user's ledger. The turn's createdAt is the time the limits are judged at.
   */
  startTurn(turn: Turn, options?: StartTurnOptions): Promise<StartTurnResult>;
  listTurns(conversationId: string): Promise<Turn[]>;
  findTurnByIdempotencyKey(userId: string, key: string): Promise<Turn | undefined>;
  getTurn(id: string): Promise<Turn | undefined>;
  /**
   * Applies the patch only if the turn's status is one of `from` (which the state machine in
   * domain/turn-state.ts gives), with the extras in the same transaction; returns the new turn,
   * or undefined when nothing was applied.
   */
  updateTurn(id: string, from: readonly TurnStatus[], patch: TurnPatch, extras?: TurnUpdateExtras): Promise<Turn | undefined>;
  /**
   * Adds metered usage to a turn and to its user's ledger for today, atomically; returns the
   * ledger after it (the model proxy cuts a turn off by it). Usage outlives a deleted turn.
   */
  addUsage(turn: Pick<Turn, 'id' | 'userId'>, usage: Usage, costUsd: number): Promise<UserLedger>;
  /** The user's ledger as it stands at `now`, and how many of their turns are unfinished. */
  getUsage(userId: string, now: Date): Promise<UserUsage>;
  /**
   * Counts one more connection out of an unfinished turn when the caps allow it (admitEgress);
   * undefined when the turn is gone or final. The turn's count is exact across instances; the
   * user's day is judged as last recorded.
   */
  openEgress(turn: Pick<Turn, 'id' | 'userId'>, caps: EgressCaps, now: Date): Promise<EgressAdmission | undefined>;
  /**
   * Connections out are over: their events go on the turn (while it is unfinished), and their
   * bytes on the turn (while it exists) and on its user's day, at once. Egress events are held
   * to the turn's connection cap by the tunnel, not to the budget of its progress events: they
   * neither use that budget nor are dropped once it is used up.
   */
  recordEgress(turn: Pick<Turn, 'id' | 'userId'>, events: NewTurnEvent[], bytes: number): Promise<void>;
  /**
   * Appends events to an unfinished turn, numbering them; returns them with their numbers, or
   * undefined when the turn does not exist or is final (its result is its last event). With a
   * budget, only the events within it are kept, the first cut batch ending with the notice.
   */
  appendEvents(turnId: string, events: NewTurnEvent[], budget?: EventBudget): Promise<TurnEvent[] | undefined>;
  /** The turn's events after `afterSeq`, in order. */
  listEvents(turnId: string, afterSeq: number): Promise<TurnEvent[]>;
  /**
   * Calls back once with the turn's result, the event written with its final state: at once if
   * it is there, else when it is written, by this instance or another. This is how a request
   * held by one instance learns that another finished its turn.
   */
  watchResult(turnId: string, listener: (result: ResultEvent) => void): () => void;
  /** Calls back with each event after `afterSeq` in order, those stored first, then as they are appended. */
  watchEvents(turnId: string, afterSeq: number, listener: (event: TurnEvent) => void): () => void;
  /** Turns not yet in a final state, everyone's or one user's (for settling those that are over). */
  listUnfinishedTurns(userId?: string): Promise<Turn[]>;
  /** Final turns whose sandbox may not be gone yet (holdsSandbox), everyone's or one user's. */
  listTurnsHoldingSandboxes(userId?: string): Promise<Turn[]>;
  /**
   * Adds a warm sandbox unless `maxIdle` or more are idle at `options.idleAt` (default `now`:
   * domain/warm-sandbox.ts), or, with `options.startsPerMinute`, the service started that many
   * sandboxes in the minute before `now` (then the start is counted at `now`, as startTurn counts a
   * turn's): the counts and the insert are one transaction, so instances filling the pool at once
   * never pass either.
   */
  addWarmSandbox(sandbox: WarmSandbox, maxIdle: number, now: Date, options?: AddWarmSandboxOptions): Promise<AddWarmSandboxResult>;
  getWarmSandbox(id: string): Promise<WarmSandbox | undefined>;
  /** Sets its ref or when its runner was last seen; undefined when it is gone. */
  updateWarmSandbox(id: string, patch: WarmSandboxPatch): Promise<WarmSandbox | undefined>;
  /**
   * The claim: in one transaction, the oldest claimable warm sandbox is bound to the queued turn,
   * and the turn moves to `starting` with that sandbox's ref (and the extras' events). Undefined
   * when the turn is not queued or no sandbox may be claimed. Two claims never get one sandbox.
   */
  claimWarmSandbox(turnId: string, now: Date, extras?: Pick<TurnUpdateExtras, 'events'>): Promise<{ sandbox: WarmSandbox; turn: Turn } | undefined>;
  /** Calls back once when the warm sandbox is claimed or removed (at once if it is already). */
  watchWarmSandbox(id: string, listener: (sandbox: WarmSandbox | undefined) => void): () => void;
  removeWarmSandbox(id: string): Promise<void>;
  /** Removes the warm sandbox only while no turn has claimed it (a compare-and-delete); whether it did. */
  removeIdleWarmSandbox(id: string): Promise<boolean>;
  /** Every warm sandbox, claimed ones included (until removed). */
  listWarmSandboxes(): Promise<WarmSandbox[]>;
  close(): Promise<void>;
}
