import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FirestoreApiKeyStore } from '../../functions/src/store/api-keys-firestore.js';
import { SqliteApiKeyStore } from '../../functions/src/store/api-keys-sqlite.js';
import type { ApiKeyRecord, ApiKeyStore } from '../../functions/src/store/api-key-store.js';
import { hashApiKey, newApiKey, parseApiKey } from '../../functions/src/auth/api-keys.js';
import { ApiKeyAuthenticator } from '../../functions/src/auth/apikey.js';
import { emulatorForSuite } from '../support/firestore-emulator.js';

/** One suite, every ApiKeyStore adapter; each test gets a fresh, empty store. */
interface Adapter {
  name: string;
  /** Why the adapter cannot run on this machine: its tests are then skipped, saying so. */
  unavailable?: string;
  setUp(): Promise<void>;
  tearDown(): Promise<void>;
  fresh(): ApiKeyStore;
}

function sqlite(): Adapter {
  let dir = '';
  let n = 0;
  return {
    name: 'SQLite',
    setUp: async () => {
      dir = mkdtempSync(path.join(tmpdir(), 'clauderun-keys-'));
    },
    tearDown: async () => rmSync(dir, { recursive: true, force: true }),
    fresh: () => new SqliteApiKeyStore(path.join(dir, `db-${++n}.sqlite`)),
  };
}

function firestore(): Adapter {
  const emulator = emulatorForSuite('API key store');
  const run = randomUUID().slice(0, 8);
  let n = 0;
  return {
    name: 'Firestore',
    unavailable: emulator.unavailable,
    setUp: emulator.setUp,
    tearDown: emulator.tearDown,
    fresh: () => new FirestoreApiKeyStore(emulator.client(), `test-${run}-${++n}-`),
  };
}

const T0 = Date.parse('2020-01-01T00:00:00.000Z');
const at = (seconds: number): string => new Date(T0 + seconds * 1000).toISOString();

/** A new key for `userId` and the record the store keeps of it. */
function issue(userId: string, createdAt: string, label?: string): { key: string; record: ApiKeyRecord } {
  const { key, id } = newApiKey();
  return { key, record: { id, userId, hash: hashApiKey(key), createdAt, ...(label === undefined ? {} : { label }) } };
}

function storeContract(adapter: Adapter): void {
  const title =
    adapter.unavailable === undefined ? `the ${adapter.name} API key store` : `the ${adapter.name} API key store (SKIPPED: ${adapter.unavailable})`;
  (adapter.unavailable === undefined ? describe : describe.skip)(title, () => {
    let store: ApiKeyStore;

    beforeAll(() => adapter.setUp());
    afterAll(() => adapter.tearDown());
    beforeEach(() => {
      store = adapter.fresh();
    });
    afterEach(() => store.close());

    it('finds a created key by its hash, exactly; an unknown hash is undefined', async () => {
      const labelled = issue('u1', at(0), 'laptop');
      const bare = issue('u1', at(1));
      await store.create(labelled.record);
      await store.create(bare.record);
      expect(await store.findByHash(labelled.record.hash)).toEqual(labelled.record);
      expect(await store.findByHash(bare.record.hash)).toEqual(bare.record);
      expect(await store.findByHash(hashApiKey(newApiKey().key))).toBeUndefined();
    });

    it('refuses a second key with the same id', async () => {
      const { record } = issue('u1', at(0));
      await store.create(record);
      await expect(store.create({ ...record, hash: hashApiKey(newApiKey().key) })).rejects.toThrow();
    });

    it('does not find a revoked key; revoking is once only', async () => {
      const { record } = issue('u1', at(0));
      await store.create(record);
      expect(await store.revoke(record.id)).toBe(true);
      expect(await store.findByHash(record.hash)).toBeUndefined();
      expect(await store.revoke(record.id)).toBe(false);
    });

    it('revoke returns false for an unknown id', async () => {
      expect(await store.revoke('0123456789ab')).toBe(false);
    });

    it('lists by user and all, oldest first, with revocations and never a hash', async () => {
      const a = issue('u1', at(2), 'second');
      const b = issue('u1', at(1));
      const c = issue('u2', at(0), 'other user');
      for (const { record } of [a, b, c]) await store.create(record);
      await store.revoke(b.record.id);

      const mine = await store.list('u1');
      expect(mine.map((k) => k.id)).toEqual([b.record.id, a.record.id]);
      expect(mine[0]).toMatchObject({ userId: 'u1', createdAt: at(1), label: null });
      expect(mine[0]!.revokedAt).toEqual(expect.any(String));
      expect(mine[1]).toEqual({ id: a.record.id, userId: 'u1', createdAt: at(2), label: 'second', revokedAt: null });

      const all = await store.list();
      expect(all.map((k) => k.id)).toEqual([c.record.id, b.record.id, a.record.id]);
      expect(await store.list('nobody')).toEqual([]);

      const text = JSON.stringify([mine, all]);
      for (const { key, record } of [a, b, c]) {
        expect(text).not.toContain(record.hash);
        expect(text).not.toContain(key);
        for (const listed of all) expect(listed).not.toHaveProperty('hash');
      }
    });
  });
}

storeContract(sqlite());
storeContract(firestore());

describe('ApiKeyAuthenticator (on the SQLite store)', () => {
  let dir: string;
  let store: SqliteApiKeyStore;
  let auth: ApiKeyAuthenticator;
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'clauderun-keyauth-'));
    store = new SqliteApiKeyStore(path.join(dir, 'clauderun.db'));
    auth = new ApiKeyAuthenticator(store);
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('accepts a valid key as its user', async () => {
    const { key, record } = issue('alice@example.com', at(0));
    await store.create(record);
    expect(await auth.authenticate(bearer(key))).toEqual({ ok: true, userId: 'alice@example.com' });
    expect(await auth.authenticate({ authorization: `bearer  ${key}` })).toEqual({ ok: true, userId: 'alice@example.com' });
  });

  it('refuses a revoked key', async () => {
    const { key, record } = issue('u1', at(0));
    await store.create(record);
    await store.revoke(record.id);
    expect(await auth.authenticate(bearer(key))).toEqual({ ok: false, message: 'the API key is not valid (unknown or revoked)' });
  });

  it('refuses an unknown key, and a known id with another secret', async () => {
    const { key, record } = issue('u1', at(0));
    await store.create(record);
    expect(await auth.authenticate(bearer(newApiKey().key))).toEqual({ ok: false, message: 'the API key is not valid (unknown or revoked)' });
    // The secret may itself hold '_': the id part is the fixed-length 'crk_<12 hex>_'.
    const forged = `${key.slice(0, 'crk_'.length + 12 + 1)}${newApiKey().key.slice(-43)}`;
    expect(parseApiKey(forged)?.id).toBe(record.id);
    expect(await auth.authenticate(bearer(forged))).toEqual({ ok: false, message: 'the API key is not valid (unknown or revoked)' });
  });

  it('refuses what is not a clauderun key', async () => {
    const { key } = newApiKey();
    for (const token of ['sk-ant-123', key.slice(0, -1), `${key}x`, key.replace('crk_', 'crx_'), 'crk_']) {
      expect(await auth.authenticate(bearer(token))).toEqual({ ok: false, message: 'not an API key' });
    }
  });

  it('refuses a request without a bearer token', async () => {
    const { key } = newApiKey();
    for (const headers of [{}, { authorization: '' }, { authorization: `Basic ${key}` }, { authorization: 'Bearer' }, { 'x-user-id': 'u1' }]) {
      expect(await auth.authenticate(headers)).toEqual({ ok: false, message: 'missing bearer token' });
    }
  });
});
