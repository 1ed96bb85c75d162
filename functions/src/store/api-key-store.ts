/** A stored API key: never the key itself, only its hash (see auth/api-keys.ts). */
export interface ApiKeyRecord {
  id: string;
  userId: string;
  /** hashApiKey(key) */
  hash: string;
  createdAt: string;
  label?: string;
}

/** What a listing shows of a key: no hash, and whether it was revoked. */
export interface ApiKeyInfo {
  id: string;
  userId: string;
  createdAt: string;
  label: string | null;
  /** When the key was revoked; null while it is valid. */
  revokedAt: string | null;
}

/** Where API keys live. */
export interface ApiKeyStore {
  /** Adds a key; fails if the id is taken. */
  create(record: ApiKeyRecord): Promise<void>;
  /** The valid key with this hash; undefined when there is none or it was revoked. */
  findByHash(hash: string): Promise<ApiKeyRecord | undefined>;
  /** The user's keys (every key without a user), revoked ones included, oldest first. */
  list(userId?: string): Promise<ApiKeyInfo[]>;
  /** Revokes the key; false when no valid key has this id (unknown or revoked already). */
  revoke(id: string): Promise<boolean>;
  close(): Promise<void>;
}

/** Orders a listing the same way in every adapter: oldest first, then by id. */
export const byCreation = (a: ApiKeyInfo, b: ApiKeyInfo): number =>
  a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
