import { chmodSync, closeSync, mkdirSync, openSync } from 'node:fs';

/**
 * The data dir holds the conversations, the API key hashes and the token-signing key: owner
 * only, however it was first made (an older version, `npm run keys`, a hand-made directory).
 */
export function ensurePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
}

/** Creates the file if need be, and makes it owner-only (SQLite gives its -wal and -shm files the same mode). */
export function ensurePrivateFile(file: string): void {
  closeSync(openSync(file, 'a', 0o600));
  chmodSync(file, 0o600);
}
