import { EventEmitter } from 'node:events';
import type { DatabaseSync } from 'node:sqlite';
import { LimitName } from '../contract/limits.js';
import { Usage, type TurnStatus } from '../contract/turn.js';
import { EVENTS_DROPPED, withinBudget, type EventBudget, type EventTally } from '../conversations/event-budget.js';
import { admit, ledgerAt, NO_LIMITS, RecentStarts, spend, UserLedger } from '../domain/quota.js';
import { FINAL_STATUSES } from '../domain/turn-state.js';
import type {
  Conversation,
  ConversationStore,
  ListCursor,
  StartTurnResult,
  Turn,
  TurnEvent,
  NewTurnEvent,
  StartTurnOptions,
  TurnPatch,
  TurnUpdateExtras,
  UserUsage,
} from './conversation-store.js';
import { openSqliteFile, str, strOrNull, type Row } from './sqlite-file.js';

/** The service_records row of everyone's sandbox starts in the last minute. */
const SERVICE_STARTS = 'sandbox_starts';

/** The final states as an SQL list, from the one definition of them. */
const FINAL_SQL = `(${FINAL_STATUSES.map((status) => `'${status}'`).join(', ')})`;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS conversations (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL,
  title TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  session_id TEXT,
  state_key TEXT
);
CREATE INDEX IF NOT EXISTS conversations_by_user ON conversations (user_id, updated_at DESC, id DESC);
CREATE TABLE IF NOT EXISTS turns (
  id TEXT PRIMARY KEY,
  conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
  user_id TEXT NOT NULL,
  prompt TEXT NOT NULL,
  status TEXT NOT NULL,
  reason TEXT,
  text TEXT,
  usage TEXT NOT NULL,
  cost_usd REAL NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL,
  started_at TEXT,
  finished_at TEXT,
  deadline_at TEXT NOT NULL,
  uploaded_state_key TEXT,
  idempotency_key TEXT,
  sandbox_ref TEXT,
  stopped_by TEXT,
  result_digest TEXT,
  holds_sandbox INTEGER NOT NULL DEFAULT 0
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
`;

/** Columns added to `turns` after its first release, with their types. */
const ADDED_TURN_COLUMNS = { stopped_by: 'TEXT', result_digest: 'TEXT', holds_sandbox: 'INTEGER NOT NULL DEFAULT 0' } as const;

function toConversation(row: Row): Conversation {
  return {
    id: str(row.id),
    userId: str(row.user_id),
    title: str(row.title),
    createdAt: str(row.created_at),
    updatedAt: str(row.updated_at),
    sessionId: strOrNull(row.session_id),
    stateKey: strOrNull(row.state_key),
  };
}

function toTurn(row: Row): Turn {
  return {
    id: str(row.id),
    conversationId: str(row.conversation_id),
    userId: str(row.user_id),
    prompt: str(row.prompt),
    status: str(row.status) as TurnStatus,
    reason: strOrNull(row.reason),
    text: strOrNull(row.text),
    usage: Usage.parse(JSON.parse(str(row.usage))),
    costUsd: Number(row.cost_usd),
    createdAt: str(row.created_at),
    startedAt: strOrNull(row.started_at),
    finishedAt: strOrNull(row.finished_at),
    deadlineAt: str(row.deadline_at),
    uploadedStateKey: strOrNull(row.uploaded_state_key),
    idempotencyKey: strOrNull(row.idempotency_key),
    sandboxRef: strOrNull(row.sandbox_ref),
    stoppedBy: LimitName.nullable().parse(row.stopped_by ?? null),
    resultDigest: strOrNull(row.result_digest ?? null),
    holdsSandbox: Number(row.holds_sandbox ?? 0) === 1,
  };
}

function toEvent(row: Row): TurnEvent {
  return {
    turnId: str(row.turn_id),
    seq: Number(row.seq),
    type: str(row.type),
    data: JSON.parse(str(row.data)) as Record<string, unknown>,
    at: str(row.at),
  };
}

const PATCH_COLUMNS: Record<keyof TurnPatch, string> = {
  status: 'status',
  reason: 'reason',
  text: 'text',
  startedAt: 'started_at',
  finishedAt: 'finished_at',
  uploadedStateKey: 'uploaded_state_key',
  sandboxRef: 'sandbox_ref',
  stoppedBy: 'stopped_by',
  resultDigest: 'result_digest',
  holdsSandbox: 'holds_sandbox',
};

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
    const columns = new Set(
      this.db
        .prepare('PRAGMA table_info(turns)')
        .all()
        .map((row) => str(row.name)),
    );
    for (const [column, type] of Object.entries(ADDED_TURN_COLUMNS)) {
      if (!columns.has(column)) this.db.exec(`ALTER TABLE turns ADD COLUMN ${column} ${type}`);
    }
  }

  async createConversation(c: Conversation): Promise<void> {
    this.insertConversation(c);
  }

  private insertConversation(c: Conversation): void {
    this.db
      .prepare('INSERT INTO conversations (id, user_id, title, created_at, updated_at, session_id, state_key) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(c.id, c.userId, c.title, c.createdAt, c.updatedAt, c.sessionId, c.stateKey);
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
    return rows.map(toConversation);
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
    return this.db.prepare('SELECT * FROM turns WHERE conversation_id = ? ORDER BY created_at, rowid').all(conversationId).map(toTurn);
  }

  async findTurnByIdempotencyKey(userId: string, key: string): Promise<Turn | undefined> {
    const row = this.db.prepare('SELECT * FROM turns WHERE user_id = ? AND idempotency_key = ?').get(userId, key);
    return row ? toTurn(row) : undefined;
  }

  async startTurn(t: Turn, { quota = NO_LIMITS, newConversation }: StartTurnOptions = {}): Promise<StartTurnResult> {
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
      this.db
        .prepare('INSERT INTO service_records (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value')
        .run(SERVICE_STARTS, JSON.stringify(admission.serviceStarts));
      if (newConversation !== undefined) this.insertConversation(newConversation);
      this.db
        .prepare(
          `INSERT INTO turns (id, conversation_id, user_id, prompt, status, reason, text, usage, cost_usd,
             created_at, started_at, finished_at, deadline_at, uploaded_state_key, idempotency_key, sandbox_ref, stopped_by, result_digest, holds_sandbox)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          t.id,
          t.conversationId,
          t.userId,
          t.prompt,
          t.status,
          t.reason,
          t.text,
          JSON.stringify(t.usage),
          t.costUsd,
          t.createdAt,
          t.startedAt,
          t.finishedAt,
          t.deadlineAt,
          t.uploadedStateKey,
          t.idempotencyKey,
          t.sandboxRef,
          t.stoppedBy,
          t.resultDigest,
          t.holdsSandbox ? 1 : 0,
        );
      this.db.prepare('UPDATE conversations SET updated_at = ? WHERE id = ?').run(t.createdAt, t.conversationId);
      return { started: true };
    });
  }

  async getTurn(id: string): Promise<Turn | undefined> {
    const row = this.db.prepare('SELECT * FROM turns WHERE id = ?').get(id);
    return row ? toTurn(row) : undefined;
  }

  async updateTurn(id: string, from: readonly TurnStatus[], patch: TurnPatch, extras: TurnUpdateExtras = {}): Promise<Turn | undefined> {
    const { commit, events } = extras;
    // SQLite has no booleans: holdsSandbox is 0 or 1.
    const entries = Object.entries(patch).map(([key, value]) => [key, typeof value === 'boolean' ? (value ? 1 : 0) : value]) as [
      keyof TurnPatch,
      string | number | null,
    ][];
    if (from.length === 0) return undefined;
    const sets = entries.map(([key]) => `${PATCH_COLUMNS[key]} = ?`);
    const sql = `UPDATE turns SET ${sets.length > 0 ? sets.join(', ') : 'id = id'}
      WHERE id = ? AND status IN (${from.map(() => '?').join(', ')}) RETURNING *`;
    const done = this.transaction(() => {
      const row = this.db.prepare(sql).get(...entries.map(([, v]) => v), id, ...from);
      if (!row) return undefined;
      const turn = toTurn(row);
      if (commit !== undefined) {
        this.db
          .prepare('UPDATE conversations SET session_id = ?, state_key = ?, updated_at = ? WHERE id = ?')
          .run(commit.sessionId, commit.stateKey, new Date().toISOString(), turn.conversationId);
      }
      return { turn, appended: this.insertEvents(id, events?.(turn) ?? []) };
    });
    if (done === undefined) return undefined;
    this.announce(id, done.appended);
    return done.turn;
  }

  async addUsage(of: Pick<Turn, 'id' | 'userId'>, usage: Usage, costUsd: number): Promise<UserLedger> {
    const { id, userId } = of;
    return this.transaction(() => {
      const ledger = spend(this.ledgerOf(userId), usage, costUsd, new Date());
      this.saveLedger(userId, ledger);
      const row = this.db.prepare('SELECT usage FROM turns WHERE id = ?').get(id);
      if (!row) return ledger;
      const current = Usage.parse(JSON.parse(str(row.usage)));
      const sum: Usage = {
        inputTokens: current.inputTokens + usage.inputTokens,
        outputTokens: current.outputTokens + usage.outputTokens,
        cacheCreationInputTokens: current.cacheCreationInputTokens + usage.cacheCreationInputTokens,
        cacheReadInputTokens: current.cacheReadInputTokens + usage.cacheReadInputTokens,
        modelCalls: current.modelCalls + usage.modelCalls,
      };
      this.db.prepare('UPDATE turns SET usage = ?, cost_usd = cost_usd + ? WHERE id = ?').run(JSON.stringify(sum), costUsd, id);
      return ledger;
    });
  }

  async getUsage(userId: string, now: Date): Promise<UserUsage> {
    return { ledger: ledgerAt(this.ledgerOf(userId), now), runningTurns: this.unfinishedTurns(userId) };
  }

  private serviceStarts(): string[] {
    const row = this.db.prepare('SELECT value FROM service_records WHERE name = ?').get(SERVICE_STARTS);
    return row ? RecentStarts.parse(JSON.parse(str(row.value))) : [];
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
        `SELECT COUNT(*) AS n, COALESCE(SUM(LENGTH(CAST(data AS BLOB))), 0) AS bytes, COALESCE(MAX(type = '${EVENTS_DROPPED}'), 0) AS capped
         FROM turn_events WHERE turn_id = ?`,
      )
      .get(turnId);
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
      return { turnId, seq, type: event.type, data: event.data, at };
    });
  }

  async listEvents(turnId: string, afterSeq: number): Promise<TurnEvent[]> {
    return this.db.prepare('SELECT * FROM turn_events WHERE turn_id = ? AND seq > ? ORDER BY seq').all(turnId, afterSeq).map(toEvent);
  }

  watchResult(turnId: string, listener: (result: TurnEvent) => void): () => void {
    const key = `events:${turnId}`;
    const deliver = (event: TurnEvent) => {
      if (event.type !== 'result') return;
      this.changes.off(key, deliver);
      listener(event);
    };
    // Reading is synchronous here, so the result cannot be written between the check and the subscription.
    const stored = this.db.prepare(`SELECT * FROM turn_events WHERE turn_id = ? AND type = 'result' LIMIT 1`).get(turnId);
    if (stored) listener(toEvent(stored));
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
    if (userId === undefined) return this.db.prepare(`SELECT * FROM turns WHERE status NOT IN ${FINAL_SQL}`).all().map(toTurn);
    return this.db.prepare(`SELECT * FROM turns WHERE user_id = ? AND status NOT IN ${FINAL_SQL}`).all(userId).map(toTurn);
  }

  async listTurnsHoldingSandboxes(userId?: string): Promise<Turn[]> {
    if (userId === undefined) return this.db.prepare('SELECT * FROM turns WHERE holds_sandbox = 1').all().map(toTurn);
    return this.db.prepare('SELECT * FROM turns WHERE user_id = ? AND holds_sandbox = 1').all(userId).map(toTurn);
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
