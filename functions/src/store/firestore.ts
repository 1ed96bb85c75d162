import { createHash } from 'node:crypto';
import firestorePackage, {
  FieldPath,
  FieldValue,
  type CollectionReference,
  type DocumentReference,
  type DocumentSnapshot,
  type QuerySnapshot,
  type Query,
  type Firestore,
  type Transaction,
} from '@google-cloud/firestore';
import { z } from 'zod';
import { TurnEventType } from '../contract/event-types.js';
import type { TurnStatus, Usage } from '../contract/turn.js';
import { ConversationRecord, type Conversation, type ListCursor } from '../domain/conversation.js';
import { NO_EVENT_BUDGET, withinBudget, type EventBudget, type EventTally } from '../domain/event-budget.js';
import { admitEgress, type EgressAdmission, type EgressCaps, spendEgress } from '../domain/egress-budget.js';
import {
  admit,
  admitConversation,
  admitFileChange,
  admitSandboxStart,
  ledgerAt,
  NO_LIMITS,
  type Quota,
  RecentStarts,
  spend,
  UserLedger,
} from '../domain/quota.js';
import { isResult, turnEventOf, type NewTurnEvent, type ResultEvent, type TurnEvent } from '../domain/turn-event.js';
import { isFinal, UNFINISHED } from '../domain/turn-state.js';
import { TurnRecord, type Turn, type TurnPatch } from '../domain/turn.js';
import { claimable, claimableInOrder, idle, WarmSandboxRecord, type WarmSandbox, type WarmSandboxPatch } from '../domain/warm-sandbox.js';
import type {
  AddWarmSandboxOptions,
  AddWarmSandboxResult,
  AdmitResult,
  ConversationStore,
  CreateConversationResult,
  ReplaceStateResult,
  StartTurnResult,
  StartTurnOptions,
  TurnUpdateExtras,
  UserUsage,
} from './conversation-store.js';
import { readable } from './readable.js';

/*
 * Layout (every collection name starts with the prefix):
 *   conversations/{id}              a Conversation + activeTurnId (its one unfinished turn, or null)
 *   turns/{id}                      a Turn + lastEventSeq (the number of its last event), eventBytes
 *                                   and eventsCapped (its progress budget: domain/event-budget.ts)
 *   turns/{id}/events/{seq}         a TurnEvent; the id is seq zero-padded, so ids sort like seqs
 *   idempotency/{hash(user, key)}   {userId, key, turnId}: claims an Idempotency-Key for one turn
 *   users/{userId}                  {ledger: UserLedger}: what the user spent and started today
 *   warmSandboxes/{id}              a WarmSandbox: started ahead, claimed by one turn
 * Timestamps are the port's ISO strings (they sort as text). The composite indexes the queries
 * need are in firestore.indexes.json at the repository root; they assume the prefix ''.
 */

// Node's ESM loader cannot see GrpcStatus among the CommonJS package's named exports.
const { GrpcStatus } = firestorePackage;

/**
 * Concurrent writers meet on one document (a conversation's activeTurnId, a turn's status or event
 * counter): a contended transaction is retried rather than failing with ABORTED. The default of 5
 * attempts was nearly used up by 10 racing writers on the emulator (it locks pessimistically).
 */
const RETRY_CONTENDED = { maxAttempts: 10 };
/** Warm sandboxes a claim tries, one after the other, when others claim the same ones at once. */
const CLAIM_CANDIDATES = 5;
/** How often a watch for a turn's result reads it again, beside its listener. */
const RESULT_RECHECK_MS = 10_000;

// A document is the record itself: parsing strips the adapter's own fields (activeTurnId,
// lastEventSeq) and catches drifted documents.
const toConversation = (snap: DocumentSnapshot): Conversation => ConversationRecord.parse(snap.data());
const toTurn = (snap: DocumentSnapshot): Turn => TurnRecord.parse(snap.data());
const toWarmSandbox = (snap: DocumentSnapshot): WarmSandbox => WarmSandboxRecord.parse(snap.data());
const named =
  (kind: string) =>
  (snap: DocumentSnapshot): string =>
    `${kind} ${snap.id}`;
/** Event data is stored as JSON text, like SQLite does: Firestore refuses nested arrays and undefined. */
const toEvent = (snap: DocumentSnapshot): TurnEvent => turnEventOf({ ...snap.data(), data: JSON.parse(z.string().parse(snap.get('data'))) });

const ledgerOf = (snap: DocumentSnapshot): UserLedger | undefined => {
  const ledger: unknown = snap.get('ledger');
  return ledger === undefined ? undefined : UserLedger.parse(ledger);
};
const activeTurnOf = (snap: DocumentSnapshot): string | null =>
  z
    .string()
    .nullable()
    .parse(snap.get('activeTurnId') ?? null);
const lastEventSeqOf = (snap: DocumentSnapshot): number =>
  z
    .number()
    .int()
    .parse(snap.get('lastEventSeq') ?? 0);
/** Every event of the turn counts; the bytes are those of the progress the runner posted. */
/** The turn's progress events as its budget counts them: its egress events are held to the connection cap instead. */
const eventTallyOf = (snap: DocumentSnapshot, events: number): EventTally => ({
  events:
    events -
    z
      .number()
      .int()
      .parse(snap.get('egressEvents') ?? 0),
  bytes: z
    .number()
    .int()
    .parse(snap.get('eventBytes') ?? 0),
  capped: snap.get('eventsCapped') === true,
});
const eventId = (seq: number): string => String(seq).padStart(10, '0');

/** How often a watch of a turn's events also reads them, in case its listener stalled (watchEvents). */
const EVENTS_POLL_MS = 10_000;

/** Firestore rejects `undefined` field values: a patch's absent fields are dropped. */
const definedFields = (patch: TurnPatch): TurnPatch => Object.fromEntries(Object.entries(patch).filter(([, value]) => value !== undefined));

/** The Google Cloud store: Firestore (native mode), every multi-document step in a transaction. */
export class FirestoreConversationStore implements ConversationStore {
  private readonly conversations: CollectionReference;
  private readonly turns: CollectionReference;
  private readonly idempotency: CollectionReference;
  private readonly users: CollectionReference;
  /** Everyone's sandbox starts of the last minute: the service-wide start limit. */
  private readonly serviceStartsRef: DocumentReference;
  private readonly warm: CollectionReference;

  /** `prefix` starts every collection name (tests use a fresh one per store); close() terminates `db`. */
  constructor(
    private readonly db: Firestore,
    prefix = '',
  ) {
    if (prefix.includes('/')) throw new Error(`a collection prefix cannot contain "/": ${prefix}`);
    this.conversations = db.collection(`${prefix}conversations`);
    this.turns = db.collection(`${prefix}turns`);
    this.idempotency = db.collection(`${prefix}idempotency`);
    this.users = db.collection(`${prefix}users`);
    this.serviceStartsRef = db.collection(`${prefix}service`).doc('sandboxStarts');
    this.warm = db.collection(`${prefix}warmSandboxes`);
  }

  async createConversation(conversation: Conversation, quota?: Quota): Promise<CreateConversationResult> {
    return this.transaction(async (tx) => {
      if (quota !== undefined) {
        const userRef = this.users.doc(conversation.userId);
        const admission = admitConversation(ledgerOf(await tx.get(userRef)), quota, new Date(conversation.createdAt));
        if (!admission.admitted) return { created: false, limitHit: admission.hit };
        tx.set(userRef, { ledger: admission.ledger }, { merge: true });
      }
      tx.create(this.conversations.doc(conversation.id), { ...conversation, activeTurnId: null });
      return { created: true };
    });
  }

  async getConversation(id: string): Promise<Conversation | undefined> {
    const snap = await this.conversations.doc(id).get();
    return snap.exists ? toConversation(snap) : undefined;
  }

  async listConversations(userId: string, limit: number, after?: ListCursor): Promise<Conversation[]> {
    if (limit <= 0) return [];
    let query = this.conversations.where('userId', '==', userId).orderBy('updatedAt', 'desc').orderBy(FieldPath.documentId(), 'desc');
    if (after) query = query.startAfter(after.updatedAt, after.id);
    return readable((await query.limit(limit).get()).docs, toConversation, named('conversation'));
  }

  /**
   * One transaction removes the conversation, its turns and their idempotency claims, so no reader
   * sees half of it and no turn can start or record events in it any more; the events of those
   * turns are deleted after it (a crash in between leaves only unreachable events behind).
   */
  async admitFileChange(userId: string, quota: Quota, now: Date): Promise<AdmitResult> {
    return this.transaction(async (tx) => {
      const userRef = this.users.doc(userId);
      const admission = admitFileChange(ledgerOf(await tx.get(userRef)), quota, now);
      if (!admission.admitted) return { admitted: false, limitHit: admission.hit };
      tx.set(userRef, { ledger: admission.ledger }, { merge: true });
      return { admitted: true };
    });
  }

  async replaceState(conversationId: string, from: string | null, to: string): Promise<ReplaceStateResult> {
    return this.transaction(async (tx) => {
      const ref = this.conversations.doc(conversationId);
      const snap = await tx.get(ref);
      if (!snap.exists) return { replaced: false, missing: true };
      const activeTurnId = activeTurnOf(snap);
      if (activeTurnId !== null) return { replaced: false, activeTurnId };
      const { stateKey } = toConversation(snap);
      if (stateKey !== from) return { replaced: false, stateKey };
      tx.update(ref, { stateKey: to, updatedAt: new Date().toISOString() });
      return { replaced: true };
    });
  }

  async deleteConversation(id: string): Promise<string[]> {
    const { keys, turnIds } = await this.transaction(async (tx) => {
      const conversationRef = this.conversations.doc(id);
      const conversation = await tx.get(conversationRef);
      const turns = (await tx.get(this.turns.where('conversationId', '==', id))).docs.map(toTurn);
      const keys = new Set<string>();
      if (conversation.exists) {
        const { stateKey } = toConversation(conversation);
        if (stateKey !== null) keys.add(stateKey);
        tx.delete(conversationRef);
      }
      for (const turn of turns) {
        if (turn.uploadedStateKey !== null) keys.add(turn.uploadedStateKey);
        if (turn.idempotencyKey !== null) tx.delete(this.idempotencyRef(turn.userId, turn.idempotencyKey));
        tx.delete(this.turns.doc(turn.id));
      }
      return { keys: [...keys], turnIds: turns.map((turn) => turn.id) };
    });
    await Promise.all(turnIds.map((turnId) => this.db.recursiveDelete(this.events(turnId))));
    return keys;
  }

  async startTurn(turn: Turn, { quota = NO_LIMITS, newConversation, title }: StartTurnOptions = {}): Promise<StartTurnResult> {
    return this.transaction(async (tx) => {
      const conversationRef = this.conversations.doc(turn.conversationId);
      const userRef = this.users.doc(turn.userId);
      const claimRef = turn.idempotencyKey === null ? undefined : this.idempotencyRef(turn.userId, turn.idempotencyKey);
      // A new conversation is created below (and the create fails should it exist): nothing to read.
      const [user, claim, conversation] = await this.readAll(tx, [userRef, claimRef, newConversation === undefined ? conversationRef : undefined]);
      if (claim?.exists) return { started: false, existingTurnId: z.string().parse(claim.get('turnId')) };
      if (user === undefined) throw new Error('the user document could not be read');
      if (newConversation === undefined) {
        if (!conversation?.exists) throw new Error(`conversation ${turn.conversationId} does not exist`);
        const activeTurnId = activeTurnOf(conversation);
        if (activeTurnId !== null) return { started: false, activeTurnId };
      }
      // Every start of a user writes their document, so their starts commit one at a time and
      // this count is exact. The count of everyone's is not guarded that way: racing starts of
      // different users may pass the global cap together, by at most their number.
      const now = new Date(turn.createdAt);
      const runningForUser = await this.holdingSlots(this.turns.where('userId', '==', turn.userId), tx);
      // The user's own limits first: a refused prompt touches nothing that every start shares
      // (a prompt loop would otherwise contend with everyone's starts for the same documents).
      const own = admit(
        ledgerOf(user),
        { user: runningForUser, everyone: 0 },
        { ...quota, runningSandboxes: Infinity, sandboxStartsPerMinute: Infinity },
        now,
      );
      if (!own.admitted) return { started: false, limitHit: own.hit };
      // The service-wide record of starts is read (and so written) only when it limits anything:
      // every start then commits through that one document, one at a time.
      const limitsStarts = Number.isFinite(quota.sandboxStartsPerMinute);
      const starts = limitsStarts ? await tx.get(this.serviceStartsRef) : undefined;
      const running = { user: runningForUser, everyone: await this.holdingSlots(this.turns, tx) };
      const serviceStarts = starts?.exists ? RecentStarts.parse(starts.get('starts')) : [];
      const admission = admit(ledgerOf(user), running, quota, now, serviceStarts);
      if (!admission.admitted) return { started: false, limitHit: admission.hit };
      if (limitsStarts) tx.set(this.serviceStartsRef, { starts: admission.serviceStarts });

      tx.create(this.turns.doc(turn.id), { ...turn, lastEventSeq: 0 });
      if (claimRef) tx.create(claimRef, { userId: turn.userId, key: turn.idempotencyKey, turnId: turn.id });
      const conversationChanges = {
        updatedAt: turn.createdAt,
        activeTurnId: isFinal(turn.status) ? null : turn.id,
        ...(title === undefined ? {} : { title }),
      };
      if (newConversation === undefined) tx.update(conversationRef, conversationChanges);
      else tx.create(conversationRef, { ...newConversation, ...conversationChanges });
      tx.set(userRef, { ledger: admission.ledger }, { merge: true });
      return { started: true };
    });
  }

  async listTurns(conversationId: string): Promise<Turn[]> {
    const snap = await this.turns.where('conversationId', '==', conversationId).orderBy('createdAt', 'asc').get();
    return readable(snap.docs, toTurn, named('turn'));
  }

  async findTurnByIdempotencyKey(userId: string, key: string): Promise<Turn | undefined> {
    const claim = await this.idempotencyRef(userId, key).get();
    return claim.exists ? this.getTurn(z.string().parse(claim.get('turnId'))) : undefined;
  }

  async getTurn(id: string): Promise<Turn | undefined> {
    const snap = await this.turns.doc(id).get();
    return snap.exists ? toTurn(snap) : undefined;
  }

  /** The compare-and-set: read the status and write the patch in one transaction. */
  async updateTurn(id: string, from: readonly TurnStatus[], patch: TurnPatch, extras: TurnUpdateExtras = {}): Promise<Turn | undefined> {
    if (from.length === 0) return undefined;
    const { commit, events } = extras;
    const changes = definedFields(patch);
    return this.transaction(async (tx) => {
      const snap = await tx.get(this.turns.doc(id));
      if (!snap.exists) return undefined;
      const turn = toTurn(snap);
      if (!from.includes(turn.status)) return undefined;
      const updated: Turn = { ...turn, ...changes };
      const finishing = !isFinal(turn.status) && isFinal(updated.status);
      const reviving = isFinal(turn.status) && !isFinal(updated.status);
      if (finishing || reviving || commit !== undefined) {
        // All reads come before the writes in a Firestore transaction.
        const conversationRef = this.conversations.doc(turn.conversationId);
        const conversation = await tx.get(conversationRef);
        if (conversation.exists) {
          // Keep the conversation's activeTurnId true: it is what startTurn checks.
          const active = activeTurnOf(conversation);
          const conversationChanges: Record<string, string | null> = {};
          if (finishing && active === id) conversationChanges.activeTurnId = null;
          if (reviving && active === null) conversationChanges.activeTurnId = id;
          if (commit !== undefined) {
            Object.assign(conversationChanges, { sessionId: commit.sessionId, stateKey: commit.stateKey, updatedAt: new Date().toISOString() });
          }
          if (Object.keys(conversationChanges).length > 0) tx.update(conversationRef, conversationChanges);
        }
      }
      this.writeTurn(tx, snap, changes, events?.(updated) ?? []);
      return updated;
    });
  }

  /** A turn's changes with the events made of them, in the transaction that read the turn. */
  private writeTurn(tx: Transaction, snap: DocumentSnapshot, changes: TurnPatch, events: NewTurnEvent[]): void {
    const lastEventSeq = this.writeEvents(tx, snap.id, lastEventSeqOf(snap), events).at(-1)?.seq;
    const turnChanges = lastEventSeq === undefined ? changes : { ...changes, lastEventSeq };
    if (Object.keys(turnChanges).length > 0) tx.update(snap.ref, turnChanges);
  }

  /**
   * The turn's usage is incremented without reading it (increments commute); only when the turn
   * is gone (its conversation deleted meanwhile) does the commit fail, and the user's ledger
   * takes the usage alone.
   */
  async addUsage(of: Pick<Turn, 'id' | 'userId'>, usage: Usage, costUsd: number): Promise<UserLedger> {
    try {
      return await this.recordSpending(of, usage, costUsd, true);
    } catch (error) {
      if ((error as { code?: unknown }).code !== GrpcStatus.NOT_FOUND) throw error;
      return this.recordSpending(of, usage, costUsd, false);
    }
  }

  private recordSpending(of: Pick<Turn, 'id' | 'userId'>, usage: Usage, costUsd: number, onTurnToo: boolean): Promise<UserLedger> {
    const increments = Object.fromEntries(Object.entries(usage).map(([field, n]) => [`usage.${field}`, FieldValue.increment(n)]));
    return this.transaction(async (tx) => {
      const userRef = this.users.doc(of.userId);
      const ledger = spend(ledgerOf(await tx.get(userRef)), usage, costUsd, new Date());
      tx.set(userRef, { ledger }, { merge: true });
      if (onTurnToo) tx.update(this.turns.doc(of.id), { ...increments, costUsd: FieldValue.increment(costUsd) });
      return ledger;
    });
  }

  async getUsage(userId: string, now: Date): Promise<UserUsage> {
    const [user, running] = await Promise.all([this.users.doc(userId).get(), this.holdingSlots(this.turns.where('userId', '==', userId))]);
    return { ledger: ledgerAt(ledgerOf(user), now), runningTurns: running };
  }

  /**
   * The turn's count is read and written in the transaction; the user's document is read beside
   * it, so that a connection does not queue behind the user's model calls and other connections.
   */
  async openEgress(of: Pick<Turn, 'id' | 'userId'>, caps: EgressCaps, now: Date): Promise<EgressAdmission | undefined> {
    const user = this.users.doc(of.userId).get();
    return this.transaction(async (tx) => {
      const snap = await tx.get(this.turns.doc(of.id));
      if (!snap.exists) return undefined;
      const turn = toTurn(snap);
      if (isFinal(turn.status)) return undefined;
      const admission = admitEgress(turn, ledgerOf(await user), caps, now);
      if (admission.admitted) tx.update(snap.ref, { egressConnections: FieldValue.increment(1) });
      return admission;
    });
  }

  async recordEgress(of: Pick<Turn, 'id' | 'userId'>, events: NewTurnEvent[], bytes: number): Promise<void> {
    await this.transaction(async (tx) => {
      // A refused attempt carried nothing: its user's document is neither read nor written.
      const userRef = this.users.doc(of.userId);
      const [snap, user] = await Promise.all([tx.get(this.turns.doc(of.id)), bytes > 0 ? tx.get(userRef) : undefined]);
      if (user !== undefined) tx.set(userRef, { ledger: spendEgress(ledgerOf(user), bytes, new Date()) }, { merge: true });
      if (!snap.exists) return;
      const changes = bytes > 0 ? { egressBytes: FieldValue.increment(bytes) } : {};
      // A tunnel may outlive its turn by a moment: its bytes count, its event is not added after the result.
      if (isFinal(toTurn(snap).status) || events.length === 0) {
        if (bytes > 0) tx.update(snap.ref, changes);
        return;
      }
      // Numbered with the turn's other events, counted apart from them (eventTallyOf).
      const last = lastEventSeqOf(snap);
      tx.update(snap.ref, { ...changes, lastEventSeq: last + events.length, egressEvents: FieldValue.increment(events.length) });
      this.writeEvents(tx, snap.id, last, events);
    });
  }

  async appendEvents(turnId: string, events: NewTurnEvent[], budget?: EventBudget): Promise<TurnEvent[] | undefined> {
    return this.transaction(async (tx) => {
      const snap = await tx.get(this.turns.doc(turnId));
      if (!snap.exists || isFinal(toTurn(snap).status)) return undefined;
      return this.appendInTransaction(tx, snap, events, budget ?? NO_EVENT_BUDGET);
    });
  }

  /** Appends to the turn read in `tx` what fits the budget, with `changes` of the turn in the same write. */
  private appendInTransaction(tx: Transaction, snap: DocumentSnapshot, events: NewTurnEvent[], budget: EventBudget): TurnEvent[] {
    const last = lastEventSeqOf(snap);
    const { kept, tally } = withinBudget(eventTallyOf(snap, last), events, budget);
    if (kept.length === 0) return [];
    tx.update(snap.ref, { lastEventSeq: last + kept.length, eventBytes: tally.bytes, ...(tally.capped ? { eventsCapped: true } : {}) });
    return this.writeEvents(tx, snap.id, last, kept);
  }

  /** Numbers events after `last` and creates them; the caller stores the new last number on the turn. */
  private writeEvents(tx: Transaction, turnId: string, last: number, events: NewTurnEvent[]): TurnEvent[] {
    const at = new Date().toISOString();
    const numbered = events.map((event, i): TurnEvent => ({ ...event, turnId, seq: last + i + 1, at }));
    for (const event of numbered) {
      tx.create(this.events(turnId).doc(eventId(event.seq)), { ...event, data: JSON.stringify(event.data) });
    }
    return numbered;
  }

  async listEvents(turnId: string, afterSeq: number): Promise<TurnEvent[]> {
    const snap = await this.events(turnId).where('seq', '>', afterSeq).orderBy('seq').get();
    return snap.docs.map(toEvent);
  }

  /** A query for the one result event: the listener reads nothing else of the turn as it runs. */
  watchResult(turnId: string, listener: (result: ResultEvent) => void): () => void {
    let delivered = false;
    const query = this.events(turnId).where('type', '==', TurnEventType.result).limit(1);
    const deliver = (snap: QuerySnapshot) => {
      const stored = snap.docs[0];
      if (stored === undefined || delivered) return;
      const result = toEvent(stored);
      if (!isResult(result)) return;
      delivered = true;
      stop();
      listener(result);
    };
    const unsubscribe = query.onSnapshot(deliver, (error) =>
      console.error(`clauderun: watching the result of turn ${turnId} failed: ${error.message}`),
    );
    // A listener ends on an error and says so only once: a waiting request looks again now and
    // then (one read each), so that it never depends on the listener alone.
    const recheck = setInterval(() => {
      query
        .get()
        .then(deliver)
        .catch(() => {});
    }, RESULT_RECHECK_MS);
    recheck.unref();
    const stop = () => {
      clearInterval(recheck);
      unsubscribe();
    };
    return stop;
  }

  watchEvents(turnId: string, afterSeq: number, listener: (event: TurnEvent) => void): () => void {
    let lastSent = afterSeq;
    let stopped = false;
    const deliver = (event: TurnEvent) => {
      if (stopped || event.seq <= lastSent) return;
      lastSent = event.seq;
      listener(event);
    };
    const unsubscribe = this.events(turnId)
      .where('seq', '>', afterSeq)
      .orderBy('seq')
      .onSnapshot(
        (snap) => {
          for (const change of snap.docChanges()) if (change.type === 'added') deliver(toEvent(change.doc));
        },
        (error) => console.error(`clauderun: watching events of turn ${turnId} failed: ${error.message}`),
      );
    // A listener can stall without an error (seen on the emulator: no snapshot for minutes): a
    // slow poll catches up on what it missed, in order, and each event still goes out once.
    let polling = false;
    const poll = setInterval(() => {
      if (polling) return;
      polling = true;
      this.listEvents(turnId, lastSent)
        .then((events) => events.forEach(deliver))
        .catch((error: Error) => console.error(`clauderun: polling events of turn ${turnId} failed: ${error.message}`))
        .finally(() => {
          polling = false;
        });
    }, EVENTS_POLL_MS);
    poll.unref();
    return () => {
      stopped = true;
      clearInterval(poll);
      unsubscribe();
    };
  }

  async listUnfinishedTurns(userId?: string): Promise<Turn[]> {
    const turns = userId === undefined ? this.turns : this.turns.where('userId', '==', userId);
    return readable((await turns.where('status', 'in', UNFINISHED).get()).docs, toTurn, named('turn'));
  }

  async listTurnsHoldingSandboxes(userId?: string): Promise<Turn[]> {
    const turns = userId === undefined ? this.turns : this.turns.where('userId', '==', userId);
    return readable((await turns.where('holdsSandbox', '==', true).get()).docs, toTurn, named('turn'));
  }

  async addWarmSandbox(sandbox: WarmSandbox, maxIdle: number, now: Date, options: AddWarmSandboxOptions = {}): Promise<AddWarmSandboxResult> {
    const { idleAt = now, startsPerMinute = Number.POSITIVE_INFINITY } = options;
    return this.transaction(async (tx): Promise<AddWarmSandboxResult> => {
      const limitsStarts = Number.isFinite(startsPerMinute);
      // All reads before the writes.
      const [pool, starts] = await Promise.all([tx.get(this.warm), limitsStarts ? tx.get(this.serviceStartsRef) : undefined]);
      if (pool.docs.map(toWarmSandbox).filter((other) => idle(other, idleAt)).length >= maxIdle) return { added: false, poolFull: true };
      if (limitsStarts) {
        const start = admitSandboxStart(starts?.exists ? RecentStarts.parse(starts.get('starts')) : [], startsPerMinute, now);
        if (!start.admitted) return { added: false, limitHit: start.hit };
        tx.set(this.serviceStartsRef, { starts: start.serviceStarts });
      }
      tx.create(this.warm.doc(sandbox.id), sandbox);
      return { added: true };
    });
  }

  async getWarmSandbox(id: string): Promise<WarmSandbox | undefined> {
    const snap = await this.warm.doc(id).get();
    return snap.exists ? toWarmSandbox(snap) : undefined;
  }

  async updateWarmSandbox(id: string, patch: WarmSandboxPatch): Promise<WarmSandbox | undefined> {
    const changes = Object.fromEntries(Object.entries(patch).filter(([, value]) => value !== undefined));
    try {
      await this.warm.doc(id).update(changes);
    } catch (error) {
      if ((error as { code?: unknown }).code === GrpcStatus.NOT_FOUND) return undefined;
      throw error;
    }
    return this.getWarmSandbox(id);
  }

  /**
   * The candidates are read outside any transaction, and each is then locked alone with the turn
   * (locking the whole pool would make every claim wait for every other, and for each runner's
   * ask): one another claim took meanwhile is seen taken, and the next is tried.
   */
  async claimWarmSandbox(
    turnId: string,
    now: Date,
    extras: Pick<TurnUpdateExtras, 'events'> = {},
  ): Promise<{ sandbox: WarmSandbox; turn: Turn } | undefined> {
    const candidates = claimableInOrder((await this.warm.where('turnId', '==', null).get()).docs.map(toWarmSandbox), now);
    for (const candidate of candidates.slice(0, CLAIM_CANDIDATES)) {
      const outcome = await this.transaction(async (tx) => {
        const [snap, warm] = await tx.getAll(this.turns.doc(turnId), this.warm.doc(candidate.id));
        if (snap === undefined || !snap.exists || toTurn(snap).status !== 'queued') return 'turn not queued';
        const sandbox = warm?.exists ? toWarmSandbox(warm) : undefined;
        if (sandbox?.ref == null || !claimable(sandbox, now)) return 'taken';
        const changes: TurnPatch = { status: 'starting', sandboxRef: sandbox.ref };
        const turn: Turn = { ...toTurn(snap), ...changes };
        this.writeTurn(tx, snap, changes, extras.events?.(turn) ?? []);
        tx.update(this.warm.doc(sandbox.id), { turnId });
        return { sandbox: { ...sandbox, turnId }, turn };
      });
      if (outcome === 'turn not queued') return undefined;
      if (outcome !== 'taken') return outcome;
    }
    return undefined;
  }

  watchWarmSandbox(id: string, listener: (sandbox: WarmSandbox | undefined) => void): () => void {
    let delivered = false;
    const unsubscribe = this.warm.doc(id).onSnapshot(
      (snap) => {
        const sandbox = snap.exists ? toWarmSandbox(snap) : undefined;
        if (delivered || sandbox?.turnId === null) return;
        delivered = true;
        unsubscribe();
        listener(sandbox);
      },
      // The claim route asks again after its long poll: a listener that failed only delays the turn until then.
      (error) => console.error(`clauderun: watching warm sandbox ${id} failed: ${error.message}`),
    );
    return unsubscribe;
  }

  async removeWarmSandbox(id: string): Promise<void> {
    await this.warm.doc(id).delete();
  }

  async removeIdleWarmSandbox(id: string): Promise<boolean> {
    const ref = this.warm.doc(id);
    return this.transaction(async (tx) => {
      const snap = await tx.get(ref);
      if (!snap.exists || toWarmSandbox(snap).turnId !== null) return false;
      tx.delete(ref);
      return true;
    });
  }

  async listWarmSandboxes(): Promise<WarmSandbox[]> {
    return (await this.warm.get()).docs.map(toWarmSandbox);
  }

  async close(): Promise<void> {
    await this.db.terminate();
  }

  private transaction<T>(work: (tx: Transaction) => Promise<T>): Promise<T> {
    return this.db.runTransaction(work, RETRY_CONTENDED);
  }

  /** Reads the documents given in one call; an absent reference reads as undefined, in its place. */
  private async readAll(tx: Transaction, refs: Array<DocumentReference | undefined>): Promise<Array<DocumentSnapshot | undefined>> {
    const present = refs.filter((ref): ref is DocumentReference => ref !== undefined);
    const snaps = await tx.getAll(...present);
    return refs.map((ref) => (ref === undefined ? undefined : snaps[present.indexOf(ref)]));
  }

  /** How many of the query's turns are unfinished: one read per thousand, nothing to keep up to date. */
  private unfinished(turns: Query) {
    return turns.where('status', 'in', UNFINISHED).count();
  }

  /**
   * How many of the query's turns hold a running slot: the unfinished, and the final ones whose
   * sandbox may not be gone (two counts of equality filters, which single-field indexes serve).
   */
  private async holdingSlots(turns: Query, tx?: Transaction): Promise<number> {
    const queries = [this.unfinished(turns), turns.where('holdsSandbox', '==', true).count()];
    const counts = await Promise.all(queries.map((q) => (tx === undefined ? q.get() : tx.get(q))));
    return counts.reduce((sum, snap) => sum + snap.data().count, 0);
  }

  private events(turnId: string): CollectionReference {
    return this.turns.doc(turnId).collection('events');
  }

  /** Keys are the client's text (any characters, any length): the document id is their hash. */
  private idempotencyRef(userId: string, key: string): DocumentReference {
    return this.idempotency.doc(
      createHash('sha256')
        .update(JSON.stringify([userId, key]))
        .digest('hex'),
    );
  }
}
