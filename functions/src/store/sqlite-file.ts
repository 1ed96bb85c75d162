import path from 'node:path';
import { DatabaseSync, type SQLInputValue } from 'node:sqlite';
import { ensurePrivateDir, ensurePrivateFile } from '../data-dir.js';

/** A row as node:sqlite returns it. */
export type Row = Record<string, SQLInputValue>;

export const str = (v: SQLInputValue | undefined): string => String(v);
export const strOrNull = (v: SQLInputValue | undefined): string | null => (v === null || v === undefined ? null : String(v));

/**
 * Opens (creating it and its directory if need be) the SQLite file the embedded stores share, in
 * WAL mode so that readers never wait for the writer, and with a busy timeout: the service and
 * `npm run keys` may hold the file at once, and each waits for the other's writes rather than fail.
 */
export function openSqliteFile(file: string, schema: string): DatabaseSync {
  if (file !== ':memory:') {
    ensurePrivateDir(path.dirname(file));
    ensurePrivateFile(file);
  }
  const db = new DatabaseSync(file);
  db.exec('PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;');
  db.exec(schema);
  return db;
}
