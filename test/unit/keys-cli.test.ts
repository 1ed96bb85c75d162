import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteApiKeyStore } from '../../functions/src/store/api-keys-sqlite.js';
import { ApiKeyAuthenticator } from '../../functions/src/auth/apikey.js';
import { runKeysCommand } from '../../functions/src/keys-cli.js';

describe('keys-cli (SQLite in a temp data dir)', () => {
  let dir: string;
  let env: Record<string, string>;

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'clauderun-keys-cli-'));
    env = { CLAUDERUN_DATA_DIR: dir };
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  async function keys(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const stdout: string[] = [];
    const stderr: string[] = [];
    const code = await runKeysCommand(argv, env, { log: (line) => stdout.push(line), error: (line) => stderr.push(line) });
    return { code, stdout: stdout.join('\n'), stderr: stderr.join('\n') };
  }

  async function authenticate(key: string) {
    const store = new SqliteApiKeyStore(path.join(dir, 'clauderun.db'));
    try {
      return await new ApiKeyAuthenticator(store).authenticate({ authorization: `Bearer ${key}` });
    } finally {
      await store.close();
    }
  }

  it('create prints a working key once; list shows it without the secret; revoke disables it', async () => {
    const created = await keys('create', 'alice', '--label', 'ci runner');
    expect(created.code).toBe(0);
    const key = /^(crk_[0-9a-f]{12}_[A-Za-z0-9_-]{43})$/m.exec(created.stdout)?.[1];
    const id = /created API key ([0-9a-f]{12}) for user alice/.exec(created.stdout)?.[1];
    expect(key).toBeDefined();
    expect(key).toContain(`crk_${id}_`);
    expect(created.stdout).toMatch(/will not be shown again/);
    expect(await authenticate(key!)).toEqual({ ok: true, userId: 'alice' });

    await keys('create', 'bob');
    const listed = await keys('list', 'alice');
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain(id!);
    expect(listed.stdout).toContain('ci runner');
    expect(listed.stdout).not.toContain(key!.slice(`crk_${id}_`.length));
    expect(listed.stdout).not.toContain('bob');
    expect((await keys('list')).stdout).toContain('bob');

    const revoked = await keys('revoke', id!);
    expect(revoked).toMatchObject({ code: 0, stdout: `revoked API key ${id}` });
    expect(await authenticate(key!)).toEqual({ ok: false, message: 'the API key is not valid (unknown or revoked)' });
    expect((await keys('list', 'alice')).stdout).toMatch(/revoked \d{4}-/);

    const again = await keys('revoke', id!);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/nothing revoked/);
  });

  it('exits 2 with the usage on a usage error', async () => {
    for (const argv of [
      [],
      ['bogus'],
      ['create'],
      ['create', 'a', 'b'],
      ['create', 'a', '--label'],
      ['create', 'bad user'],
      ['revoke'],
      ['revoke', 'xyz'],
    ]) {
      const result = await keys(...argv);
      expect(result.code, argv.join(' ')).toBe(2);
      expect(result.stderr).toContain('usage: keys-cli create');
    }
  });

  it('exits 1 when the configuration is invalid', async () => {
    env = { CLAUDERUN_DATA_DIR: dir, CLAUDERUN_STORE: 'firestore' };
    const result = await keys('list');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('GOOGLE_CLOUD_PROJECT');
  });
});
