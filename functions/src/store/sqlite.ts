import { EventEmitter } from 'node:events';
import type { DatabaseSync, SQLInputValue } from 'node:sqlite';
import { TurnEventType } from '../contract/event-types.js';
import { Usage, type TurnStatus } from '../contract/turn.js';
import { ConversationRecord, type Conversation, type ListCursor } from '../domain/conversation.js';
import { withinBudget, type EventBudget, type EventTally } from '../domain/event-budget.js';
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
import { FINAL_STATUSES } from '../domain/turn-state.js';
import { addUsage, TurnRecord, type Turn, type TurnPatch } from '../domain/turn.js';
import { firstClaimable, idle, WarmSandboxRecord, type WarmSandbox, type WarmSandboxPatch } from '../domain/warm-sandbox.js';
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
import { openSqliteFile, str, type Row } from './sqlite-file.js';
import { readable } from './readable.js';

/** The service_records row of everyone's sandbox starts in the last minute. */
const SERVICE_STARTS = 'sandbox_starts';

/** The final states as an SQL list, from the one definition of them. */
const FINAL_SQL = `(${FINAL_STATUSES.map((status) => `'${status}'`).join(', ')})`;

/**
 * A turn's row: one column per field of the record, named after it in snake_case, with its SQL
 * type. The table is made from this list, and opening a database made before a column existed
 * adds it, so a column added here must be one ALTER TABLE can add (nullable, or with a default).
 */
const TURN_COLUMNS = {
  id: 'TEXT PRIMARY KEY',
  conversationId: 'TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE',
  userId: 'TEXT NOT NULL',
  prompt: 'TEXT NOT NULL',
  options: "TEXT NOT NULL DEFAULT '{}'",
  status: 'TEXT NOT NULL',
  reason: 'TEXT',
  text: 'TEXT',
  usage: 'TEXT NOT NULL',
  costUsd: 'REAL NOT NULL DEFAULT 0',
  createdAt: 'TEXT NOT NULL',
  startedAt: 'TEXT',
  finishedAt: 'TEXT',
  deadlineAt: 'TEXT NOT NULL',
  uploadedStateKey: 'TEXT',
  idempotencyKey: 'TEXT',
  sandboxRef: 'TEXT',
  stoppedBy: 'TEXT',
  resultDigest: 'TEXT',
  holdsSandbox: 'INTEGER NOT NULL DEFAULT 0',
  egressConnections: 'INTEGER NOT NULL DEFAULT 0',
  egressBytes: 'INTEGER NOT NULL DEFAULT 0',
} as const satisfies Record<keyof Turn, string>;

type TurnField = keyof typeof TURN_COLUMNS;
const TURN_FIELDS = Object.keys(TURN_COLUMNS) as TurnField[];
const columnOf = (field: TurnField): string => field.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);

/** A field as its column holds it: SQLite has no booleans (0 or 1) and no objects (JSON text). */
function toColumnValue(value: Turn[TurnField]): SQLInputValue {
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (typeof value === 'object' && value !== null) return JSON.stringify(value);
  return value;
}

/** The fields toColumnValue encodes, read back. */
const DECODE: Partial<Record<TurnField, (value: SQLInputValue) => unknown>> = {
  usage: (text) => JSON.parse(String(text)),
  options: (text) => JSON.parse(String(text)),
  holdsSandbox: (flag) => Number(flag) === 1,
};

const SCHEMA = `
CREATE TABLE IF NOT EXISTS conversations (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL,
  title TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  session_id TEXT,
  state_key TEXT,
  options TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS conversations_by_user ON conversations (user_id, updated_at DESC, id DESC);
CREATE TABLE IF NOT EXISTS turns (
  ${TURN_FIELDS.map((field) => `${columnOf(field)} ${TURN_COLUMNS[field]}`).join(',\n  ')}
);
CREATE UNIQUE INDEX IF NOT EXISTS turns_by_idempotency_key ON turns (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS turn_events (
  turn_id TEXT NOT NULL REFERENCES turns (id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  type TEXT NOT NULL,
  data TEXT NOT NULL,
  at TEXT NOT NULL,
  PRIMARY KEY (turn_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS turns_by_conversation ON turns (conversation_id, created_at);
CREATE INDEX IF NOT EXISTS turns_unfinished ON turns (status) WHERE status NOT IN ${FINAL_SQL};
CREATE INDEX IF NOT EXISTS turns_unfinished_by_user ON turns (user_id) WHERE status NOT IN ${FINAL_SQL};
CREATE TABLE IF NOT EXISTS user_ledgers (
  user_id TEXT PRIMARY KEY,
  ledger TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS service_records (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS warm_sandboxes (
  id TEXT PRIMARY KEY,
  ref TEXT,
  created_at TEXT NOT NULL,
  seen_at TEXT,
  expires_at TEXT NOT NULL,
  turn_id TEXT
);
`;

const toConversation = (row: Row): Conversation =>
  ConversationRecord.parse({
    id: row.id,
    userId: row.user_id,
    title: row.title,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    sessionId: row.session_id,
    stateKey: row.state_key,
    options: JSON.parse(str(row.options ?? '{}')),
  });

const toWarmSandbox = (row: Row): WarmSandbox =>
  WarmSandboxRecord.parse({
    id: row.id,
    ref: row.ref,
    createdAt: row.created_at,
    seenAt: row.seen_at,
    expiresAt: row.expires_at,
    turnId: row.turn_id,
  });

const conversationNamed = (row: Row): string => `conversation ${String(row.id)}`;
const turnNamed = (row: Row): string => `turn ${String(row.id)}`;

const toTurn = (row: Row): Turn =>
  TurnRecord.parse(
    Object.fromEntries(
      TURN_FIELDS.map((field) => {
        const value = row[columnOf(field)];
        const decode = DECODE[field];
        return [field, value === null || value === undefined || decode === undefined ? value : decode(value)];
      }),
    ),
  );

const toEvent = (row: Row): TurnEvent =>
  turnEventOf({ turnId: row.turn_id, seq: Number(row.seq), type: row.type, data: JSON.parse(str(row.data)), at: row.at });

const INSERT_TURN = `INSERT INTO turns (${TURN_FIELDS.map(columnOf).join(', ')}) VALUES (${TURN_FIELDS.map(() => '?').join(', ')})`;

/** The embedded default store: one SQLite file under the data dir (node:sqlite, WAL mode). */
export class SqliteConversationStore implements ConversationStore {
  private readonly db: DatabaseSync;
  /** One process owns the file, so its own writes are all there is to watch. */
  private readonly changes = new EventEmitter().setMaxListeners(0);

  constructor(file: string) {
    this.db = openSqliteFile(file, SCHEMA);
    this.addMissingColumns();
  }

  /** Databases made before a column existed get it (CREATE TABLE IF NOT EXISTS leaves them as they were). */
  private addMissingColumns(): void {
    const columnsOf = (table: string) =>
      new Set(
        this.db
          .prepare(`PRAGMA table_info(${table})`)
          .all()
          .map((row) => str(row.name)),
      );
    const turns = columnsOf('turns');
    for (const field of TURN_FIELDS) {
      if (!turns.has(columnOf(field))) this.db.exec(`ALTER TABLE turns ADD COLUMN ${columnOf(field)} ${TURN_COLUMNS[field]}`);
    }
    if (!columnsOf('conversations').has('options')) this.db.exec("ALTER TABLE conversations ADD COLUMN options TEXT NOT NULL DEFAULT '{}'");
  }

  async createConversation(c: Conversation, quota?: Quota): Promise<CreateConversationResult> {
    return this.transaction(() => {
      if (quota !== undefined) {
        const admission = admitConversation(this.ledgerOf(c.userId), quota, new Date(c.createdAt));
        if (!admission.admitted) return { created: false, limitHit: admission.hit };
        this.saveLedger(c.userId, admission.ledger);
      }
      this.insertConversation(c);
      return { created: true };
    });
  }

  private insertConversation(c: Conversation): void {
    this.db
      .prepare(
        'INSERT INTO conversations (id, user_id, title, created_at, updated_at, session_id, state_key, options) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      )
      .run(c.id, c.userId, c.title, c.createdAt, c.updatedAt, c.sessionId, c.stateKey, JSON.stringify(c.options));
  }

  async getConversation(id: string): Promise<Conversation | undefined> {
    const row = this.db.prepare('SELECT * FROM conversations WHERE id = ?').get(id);
    return row ? toConversation(row) : undefined;
  }

  async listConversations(userId: string, limit: number, after?: ListCursor): Promise<Conversation[]> {
    const rows = after
      ? this.db
          .prepare(
            `SELECT * FROM conversations WHERE user_id = ? AND (updated_at < ? OR (updated_at = ? AND id < ?))
             ORDER BY updated_at DESC, id DESC LIMIT ?`,
          )
          .all(userId, after.updatedAt, after.updatedAt, after.id, limit)
      : this.db.prepare('SELECT * FROM conversations WHERE user_id = ? ORDER BY updated_at DESC, id DESC LIMIT ?').all(userId, limit);
    return readable(rows, toConversation, conversationNamed);
  }

  async admitFileChange(userId: string, quota: Quota, now: Date): Promise<AdmitResult> {
    return this.transaction(() => {
      const admission = admitFileChange(this.ledgerOf(userId), quota, now);
      if (!admission.admitted) return { admitted: false, limitHit: admission.hit };
      this.saveLedger(userId, admission.ledger);
      return { admitted: true };
    });
  }

  async replaceState(conversationId: string, from: string | null, to: string): Promise<ReplaceStateResult> {
    return this.transaction(() => {
      const row = this.db.prepare('SELECT state_key FROM conversations WHERE id = ?').get(conversationId);
      if (!row) return { replaced: false, missing: true };
      const active = this.db.prepare(`SELECT id FROM turns WHERE conversation_id = ? AND status NOT IN ${FINAL_SQL} LIMIT 1`).get(conversationId);
      if (active) return { replaced: false, activeTurnId: str(active.id) };
      const stateKey = row.state_key === null ? null : str(row.state_key);
      if (stateKey !== from) return { replaced: false, stateKey };
      this.db.prepare('UPDATE conversations SET state_key = ?, updated_at = ? WHERE id = ?').run(to, new Date().toISOString(), conversationId);
      return { replaced: true };
    });
  }

  async deleteConversation(id: string): Promise<string[]> {
    return this.transaction(() => {
      const keys = this.db
        .prepare(
          `SELECT state_key AS key FROM conversations WHERE id = ? AND state_key IS NOT NULL
           UNION SELECT uploaded_state_key FROM turns WHERE conversation_id = ? AND uploaded_state_key IS NOT NULL`,
        )
        .all(id, id)
        .map((row) => str(row.key));
      this.db.prepare('DELETE FROM conversations WHERE id = ?').run(id);
      return keys;
    });
  }

  async listTurns(conversationId: string): Promise<Turn[]> {
    const rows = this.db.prepare('SELECT * FROM turns WHERE conversation_id = ? ORDER BY created_at, rowid').all(conversationId);
    return readable(rows, toTurn, turnNamed);
  }

  async findTurnByIdempotencyKey(userId: string, key: string): Promise<Turn | undefined> {
    const row = this.db.prepare('SELECT * FROM turns WHERE user_id = ? AND idempotency_key = ?').get(userId, key);
    return row ? toTurn(row) : undefined;
  }

  async startTurn(t: Turn, { quota = NO_LIMITS, newConversation, title }: StartTurnOptions = {}): Promise<StartTurnResult> {
    return this.transaction(() => {
      if (t.idempotencyKey !== null) {
        const existing = this.db.prepare('SELECT id FROM turns WHERE user_id = ? AND idempotency_key = ?').get(t.userId, t.idempotencyKey);
        if (existing) return { started: false, existingTurnId: str(existing.id) };
      }
      const active = this.db.prepare(`SELECT id FROM turns WHERE conversation_id = ? AND status NOT IN ${FINAL_SQL} LIMIT 1`).get(t.conversationId);
      if (active) return { started: false, activeTurnId: str(active.id) };
      const running = { user: this.unfinishedTurns(t.userId), everyone: this.unfinishedTurns() };
      const admission = admit(this.ledgerOf(t.userId), running, quota, new Date(t.createdAt), this.serviceStarts());
      if (!admission.admitted) return { started: false, limitHit: admission.hit };
      this.saveLedger(t.userId, admission.ledger);
      this.saveServiceStarts(admission.serviceStarts);
      if (newConversation !== undefined) this.insertConversation(newConversation);
      this.db.prepare(INSERT_TURN).run(...TURN_FIELDS.map((field) => toColumnValue(t[field])));
      this.db
        .prepare('UPDATE conversations SET updated_at = ?, title = coalesce(?, title) WHERE id = ?')
        .run(t.createdAt, title ?? null, t.conversationId);
      return { started: true };
    });
  }

  async getTurn(id: string): Promise<Turn | undefined> {
    const row = this.db.prepare('SELECT * FROM turns WHERE id = ?').get(id);
    return row ? toTurn(row) : undefined;
  }

  async updateTurn(id: string, from: readonly TurnStatus[], patch: TurnPatch, extras: TurnUpdateExtras = {}): Promise<Turn | undefined> {
    const done = this.transaction(() => this.updateTurnRow(id, from, patch, extras));
    if (done === undefined) return undefined;
    this.announce(id, done.appended);
    return done.turn;
  }

  /** updateTurn's compare-and-set; the caller holds the transaction and announces the events. */
  private updateTurnRow(
    id: string,
    from: readonly TurnStatus[],
    patch: TurnPatch,
    extras: TurnUpdateExtras,
  ): { turn: Turn; appended: TurnEvent[] } | undefined {
    const { commit, events } = extras;
    if (from.length === 0) return undefined;
    const fields = (Object.keys(patch) as (keyof TurnPatch)[]).filter((field) => patch[field] !== undefined);
    const sets = fields.map((field) => `${columnOf(field)} = ?`);
    const sql = `UPDATE turns SET ${sets.length > 0 ? sets.join(', ') : 'id = id'}
      WHERE id = ? AND status IN (${from.map(() => '?').join(', ')}) RETURNING *`;
    const values = fields.map((field) => toColumnValue(patch[field] ?? null));
    const row = this.db.prepare(sql).get(...values, id, ...from);
    if (!row) return undefined;
    const turn = toTurn(row);
    if (commit !== undefined) {
      this.db
        .prepare('UPDATE conversations SET session_id = ?, state_key = ?, updated_at = ? WHERE id = ?')
        .run(commit.sessionId, commit.stateKey, new Date().toISOString(), turn.conversationId);
    }
    return { turn, appended: this.insertEvents(id, events?.(turn) ?? []) };
  }

  async addUsage(of: Pick<Turn, 'id' | 'userId'>, usage: Usage, costUsd: number): Promise<UserLedger> {
    const { id, userId } = of;
    return this.transaction(() => {
      const ledger = spend(this.ledgerOf(userId), usage, costUsd, new Date());
      this.saveLedger(userId, ledger);
      const row = this.db.prepare('SELECT usage FROM turns WHERE id = ?').get(id);
      if (!row) return ledger;
      const sum = addUsage(Usage.parse(JSON.parse(str(row.usage))), usage);
      this.db.prepare('UPDATE turns SET usage = ?, cost_usd = cost_usd + ? WHERE id = ?').run(JSON.stringify(sum), costUsd, id);
      return ledger;
    });
  }

  async getUsage(userId: string, now: Date): Promise<UserUsage> {
    return { ledger: ledgerAt(this.ledgerOf(userId), now), runningTurns: this.unfinishedTurns(userId) };
  }

  async openEgress(of: Pick<Turn, 'id' | 'userId'>, caps: EgressCaps, now: Date): Promise<EgressAdmission | undefined> {
    return this.transaction(() => {
      const row = this.db.prepare(`SELECT egress_connections, egress_bytes FROM turns WHERE id = ? AND status NOT IN ${FINAL_SQL}`).get(of.id);
      if (!row) return undefined;
      const used = { egressConnections: Number(row.egress_connections), egressBytes: Number(row.egress_bytes) };
      const admission = admitEgress(used, this.ledgerOf(of.userId), caps, now);
      if (admission.admitted) this.db.prepare('UPDATE turns SET egress_connections = egress_connections + 1 WHERE id = ?').run(of.id);
      return admission;
    });
  }

  async recordEgress(of: Pick<Turn, 'id' | 'userId'>, events: NewTurnEvent[], bytes: number): Promise<void> {
    const appended = this.transaction(() => {
      // A refused attempt carried nothing: its user's day is left as it is.
      if (bytes > 0) {
        this.saveLedger(of.userId, spendEgress(this.ledgerOf(of.userId), bytes, new Date()));
        this.db.prepare('UPDATE turns SET egress_bytes = egress_bytes + ? WHERE id = ?').run(bytes, of.id);
      }
      const unfinished = this.db.prepare(`SELECT 1 FROM turns WHERE id = ? AND status NOT IN ${FINAL_SQL}`).get(of.id);
      return unfinished ? this.insertEvents(of.id, events) : [];
    });
    this.announce(of.id, appended);
  }

  private serviceStarts(): string[] {
    const row = this.db.prepare('SELECT value FROM service_records WHERE name = ?').get(SERVICE_STARTS);
    return row ? RecentStarts.parse(JSON.parse(str(row.value))) : [];
  }

  private saveServiceStarts(starts: string[]): void {
    this.db
      .prepare('INSERT INTO service_records (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value')
      .run(SERVICE_STARTS, JSON.stringify(starts));
  }

  private ledgerOf(userId: string): UserLedger | undefined {
    const row = this.db.prepare('SELECT ledger FROM user_ledgers WHERE user_id = ?').get(userId);
    return row ? UserLedger.parse(JSON.parse(str(row.ledger))) : undefined;
  }

  private saveLedger(userId: string, ledger: UserLedger): void {
    this.db
      .prepare('INSERT INTO user_ledgers (user_id, ledger) VALUES (?, ?) ON CONFLICT (user_id) DO UPDATE SET ledger = excluded.ledger')
      .run(userId, JSON.stringify(ledger));
  }

  /** Turns that hold a running slot (unfinished, or final with a sandbox not yet gone): the user's, or everyone's. */
  private unfinishedTurns(userId?: string): number {
    const running = `(status NOT IN ${FINAL_SQL} OR holds_sandbox = 1)`;
    const row =
      userId === undefined
        ? this.db.prepare(`SELECT COUNT(*) AS n FROM turns WHERE ${running}`).get()
        : this.db.prepare(`SELECT COUNT(*) AS n FROM turns WHERE user_id = ? AND ${running}`).get(userId);
    return Number(row?.n ?? 0);
  }

  async appendEvents(turnId: string, events: NewTurnEvent[], budget?: EventBudget): Promise<TurnEvent[] | undefined> {
    const appended = this.transaction(() => {
      const turn = this.db.prepare(`SELECT 1 FROM turns WHERE id = ? AND status NOT IN ${FINAL_SQL}`).get(turnId);
      if (!turn) return undefined;
      return this.insertEvents(turnId, budget === undefined ? events : withinBudget(this.eventTally(turnId), events, budget).kept);
    });
    if (appended !== undefined) this.announce(turnId, appended);
    return appended;
  }

  private eventTally(turnId: string): EventTally {
    const row = this.db
      .prepare(
        `SELECT COUNT(*) AS n, COALESCE(SUM(LENGTH(CAST(data AS BLOB))), 0) AS bytes, COALESCE(MAX(type = ?), 0) AS capped
         FROM turn_events WHERE turn_id = ? AND type <> ?`,
      )
      .get(TurnEventType.events_dropped, turnId, TurnEventType.egress);
    return { events: Number(row?.n ?? 0), bytes: Number(row?.bytes ?? 0), capped: Number(row?.capped ?? 0) === 1 };
  }

  private announce(turnId: string, events: TurnEvent[]): void {
    for (const event of events) this.changes.emit(`events:${turnId}`, event);
  }

  /** Numbers and inserts events; the caller holds the transaction. */
  private insertEvents(turnId: string, events: NewTurnEvent[]): TurnEvent[] {
    if (events.length === 0) return [];
    const last = this.db.prepare('SELECT COALESCE(MAX(seq), 0) AS seq FROM turn_events WHERE turn_id = ?').get(turnId);
    let seq = Number(last?.seq ?? 0);
    const insert = this.db.prepare('INSERT INTO turn_events (turn_id, seq, type, data, at) VALUES (?, ?, ?, ?, ?)');
    const at = new Date().toISOString();
    return events.map((event) => {
      seq += 1;
      insert.run(turnId, seq, event.type, JSON.stringify(event.data), at);
      return { ...event, turnId, seq, at };
    });
  }

  async listEvents(turnId: string, afterSeq: number): Promise<TurnEvent[]> {
    return this.db.prepare('SELECT * FROM turn_events WHERE turn_id = ? AND seq > ? ORDER BY seq').all(turnId, afterSeq).map(toEvent);
  }

  watchResult(turnId: string, listener: (result: ResultEvent) => void): () => void {
    const key = `events:${turnId}`;
    const deliver = (event: TurnEvent) => {
      if (!isResult(event)) return;
      this.changes.off(key, deliver);
      listener(event);
    };
    // Reading is synchronous here, so the result cannot be written between the check and the subscription.
    const stored = this.db.prepare('SELECT * FROM turn_events WHERE turn_id = ? AND type = ? LIMIT 1').get(turnId, TurnEventType.result);
    if (stored) deliver(toEvent(stored));
    else this.changes.on(key, deliver);
    return () => this.changes.off(key, deliver);
  }

  watchEvents(turnId: string, afterSeq: number, listener: (event: TurnEvent) => void): () => void {
    const key = `events:${turnId}`;
    let lastSent = afterSeq;
    const deliver = (event: TurnEvent) => {
      if (event.seq <= lastSent) return;
      lastSent = event.seq;
      listener(event);
    };
    // Reading is synchronous here, so nothing can be appended between the replay and the subscription.
    for (const row of this.db.prepare('SELECT * FROM turn_events WHERE turn_id = ? AND seq > ? ORDER BY seq').all(turnId, afterSeq)) {
      deliver(toEvent(row));
    }
    this.changes.on(key, deliver);
    return () => this.changes.off(key, deliver);
  }

  async listUnfinishedTurns(userId?: string): Promise<Turn[]> {
    const rows =
      userId === undefined
        ? this.db.prepare(`SELECT * FROM turns WHERE status NOT IN ${FINAL_SQL}`).all()
        : this.db.prepare(`SELECT * FROM turns WHERE user_id = ? AND status NOT IN ${FINAL_SQL}`).all(userId);
    return readable(rows, toTurn, turnNamed);
  }

  async listTurnsHoldingSandboxes(userId?: string): Promise<Turn[]> {
    const rows =
      userId === undefined
        ? this.db.prepare('SELECT * FROM turns WHERE holds_sandbox = 1').all()
        : this.db.prepare('SELECT * FROM turns WHERE user_id = ? AND holds_sandbox = 1').all(userId);
    return readable(rows, toTurn, turnNamed);
  }

  async addWarmSandbox(sandbox: WarmSandbox, maxIdle: number, now: Date, options: AddWarmSandboxOptions = {}): Promise<AddWarmSandboxResult> {
    const { idleAt = now, startsPerMinute = Number.POSITIVE_INFINITY } = options;
    return this.transaction((): AddWarmSandboxResult => {
      if (this.warmSandboxes().filter((other) => idle(other, idleAt)).length >= maxIdle) return { added: false, poolFull: true };
      if (Number.isFinite(startsPerMinute)) {
        const start = admitSandboxStart(this.serviceStarts(), startsPerMinute, now);
        if (!start.admitted) return { added: false, limitHit: start.hit };
        this.saveServiceStarts(start.serviceStarts);
      }
      this.db
        .prepare('INSERT INTO warm_sandboxes (id, ref, created_at, seen_at, expires_at, turn_id) VALUES (?, ?, ?, ?, ?, ?)')
        .run(sandbox.id, sandbox.ref, sandbox.createdAt, sandbox.seenAt, sandbox.expiresAt, sandbox.turnId);
      return { added: true };
    });
  }

  async getWarmSandbox(id: string): Promise<WarmSandbox | undefined> {
    const row = this.db.prepare('SELECT * FROM warm_sandboxes WHERE id = ?').get(id);
    return row ? toWarmSandbox(row) : undefined;
  }

  async updateWarmSandbox(id: string, patch: WarmSandboxPatch): Promise<WarmSandbox | undefined> {
    const row = this.db
      .prepare('UPDATE warm_sandboxes SET ref = coalesce(?, ref), seen_at = coalesce(?, seen_at) WHERE id = ? RETURNING *')
      .get(patch.ref ?? null, patch.seenAt ?? null, id);
    return row ? toWarmSandbox(row) : undefined;
  }

  async claimWarmSandbox(
    turnId: string,
    now: Date,
    extras: Pick<TurnUpdateExtras, 'events'> = {},
  ): Promise<{ sandbox: WarmSandbox; turn: Turn } | undefined> {
    const done = this.transaction(() => {
      const queued = this.db.prepare("SELECT 1 FROM turns WHERE id = ? AND status = 'queued'").get(turnId);
      const chosen = queued ? firstClaimable(this.warmSandboxes(), now) : undefined;
      if (chosen?.ref == null) return undefined;
      const updated = this.updateTurnRow(turnId, ['queued'], { status: 'starting', sandboxRef: chosen.ref }, extras);
      if (updated === undefined) return undefined;
      this.db.prepare('UPDATE warm_sandboxes SET turn_id = ? WHERE id = ?').run(turnId, chosen.id);
      return { ...updated, sandbox: { ...chosen, turnId } };
    });
    if (done === undefined) return undefined;
    this.announce(turnId, done.appended);
    this.changes.emit(`warm:${done.sandbox.id}`, done.sandbox);
    return { sandbox: done.sandbox, turn: done.turn };
  }

  watchWarmSandbox(id: string, listener: (sandbox: WarmSandbox | undefined) => void): () => void {
    const key = `warm:${id}`;
    const deliver = (sandbox: WarmSandbox | undefined) => {
      this.changes.off(key, deliver);
      listener(sandbox);
    };
    // Reading is synchronous here, so no claim can come between the check and the subscription.
    const row = this.db.prepare('SELECT * FROM warm_sandboxes WHERE id = ?').get(id);
    const stored = row ? toWarmSandbox(row) : undefined;
    if (stored === undefined || stored.turnId !== null) deliver(stored);
    else this.changes.on(key, deliver);
    return () => this.changes.off(key, deliver);
  }

  async removeWarmSandbox(id: string): Promise<void> {
    this.db.prepare('DELETE FROM warm_sandboxes WHERE id = ?').run(id);
    this.changes.emit(`warm:${id}`, undefined);
  }

  async removeIdleWarmSandbox(id: string): Promise<boolean> {
    const removed = Number(this.db.prepare('DELETE FROM warm_sandboxes WHERE id = ? AND turn_id IS NULL').run(id).changes) > 0;
    if (removed) this.changes.emit(`warm:${id}`, undefined);
    return removed;
  }

  async listWarmSandboxes(): Promise<WarmSandbox[]> {
    return this.warmSandboxes();
  }

  private warmSandboxes(): WarmSandbox[] {
    return this.db.prepare('SELECT * FROM warm_sandboxes ORDER BY created_at, id').all().map(toWarmSandbox);
  }

  async close(): Promise<void> {
    if (this.db.isOpen) this.db.close();
  }

  private transaction<T>(work: () => T): T {
    this.db.exec('BEGIN IMMEDIATE');
    try {
      const result = work();
      this.db.exec('COMMIT');
      return result;
    } catch (error) {
      this.db.exec('ROLLBACK');
      throw error;
    }
  }
}
