import type { DatabaseSync } from 'node:sqlite';
import { openSqliteFile, strOrNull, type Row } from './sqlite-file.js';
import type { ApiKeyInfo, ApiKeyRecord, ApiKeyStore } from './api-key-store.js';

/** Its own table, in the same file as the conversation store (clauderun.db in the data dir). */
const SCHEMA = `
CREATE TABLE IF NOT EXISTS api_keys (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL,
  hash TEXT NOT NULL UNIQUE,
  created_at TEXT NOT NULL,
  label TEXT,
  revoked_at TEXT
);
CREATE INDEX IF NOT EXISTS api_keys_by_user ON api_keys (user_id, created_at, id);
`;

function toInfo(row: Row): ApiKeyInfo {
  return {
    id: String(row.id),
    userId: String(row.user_id),
    createdAt: String(row.created_at),
    label: strOrNull(row.label),
    revokedAt: strOrNull(row.revoked_at),
  };
}

export class SqliteApiKeyStore implements ApiKeyStore {
  private readonly db: DatabaseSync;

  constructor(file: string) {
    this.db = openSqliteFile(file, SCHEMA);
  }

  async create(record: ApiKeyRecord): Promise<void> {
    this.db
      .prepare('INSERT INTO api_keys (id, user_id, hash, created_at, label) VALUES (?, ?, ?, ?, ?)')
      .run(record.id, record.userId, record.hash, record.createdAt, record.label ?? null);
  }

  async findByHash(hash: string): Promise<ApiKeyRecord | undefined> {
    const row = this.db.prepare('SELECT * FROM api_keys WHERE hash = ? AND revoked_at IS NULL').get(hash);
    if (!row) return undefined;
    const label = strOrNull(row.label);
    return {
      id: String(row.id),
      userId: String(row.user_id),
      hash: String(row.hash),
      createdAt: String(row.created_at),
      ...(label === null ? {} : { label }),
    };
  }

  async list(userId?: string): Promise<ApiKeyInfo[]> {
    const rows =
      userId === undefined
        ? this.db.prepare('SELECT * FROM api_keys ORDER BY created_at, id').all()
        : this.db.prepare('SELECT * FROM api_keys WHERE user_id = ? ORDER BY created_at, id').all(userId);
    return rows.map(toInfo);
  }

  async revoke(id: string): Promise<boolean> {
    const result = this.db.prepare('UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(new Date().toISOString(), id);
    return Number(result.changes) > 0;
  }

  async close(): Promise<void> {
    if (this.db.isOpen) this.db.close();
  }
}
