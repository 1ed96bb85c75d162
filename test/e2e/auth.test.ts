import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runKeysCommand } from '../../functions/src/keys-cli.js';
import { ManualLauncher } from '../support/manual-launcher.js';
import { call, prompt, startService, type RunningService } from '../support/service.js';

const PROJECT = 'clauderun-auth-test';

/** The API with API keys and Firebase ID tokens together, as a deployment would run it. */
describe('real authentication through the API', () => {
  let service: RunningService;
  let keyServer: Server;
  let signingKey: CryptoKey;
  const launcher = new ManualLauncher();

  beforeAll(async () => {
    const pair = await generateKeyPair('RS256');
    signingKey = pair.privateKey;
    const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' }] });
    keyServer = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(jwks));
    await new Promise<void>((resolve) => keyServer.listen(0, '127.0.0.1', resolve));
    service = await startService(
      {
        CLAUDERUN_AUTH: 'apikey,firebase',
        FIREBASE_PROJECT_ID: PROJECT,
        CLAUDERUN_FIREBASE_JWKS_URL: `http://127.0.0.1:${(keyServer.address() as AddressInfo).port}/jwks`,
      },
      undefined,
      { launcher },
    );
  });
  afterAll(async () => {
    await service?.stop({ removeData: true });
    await new Promise((resolve) => keyServer?.close(resolve));
  });

  async function keys(...argv: string[]): Promise<{ code: number; out: string }> {
    let out = '';
    const write = (text: string) => (out += `${text}\n`);
    const code = await runKeysCommand(argv, { CLAUDERUN_DATA_DIR: service.dataDir }, { log: write, error: write });
    return { code, out };
  }

  const idToken = (sub: string) => {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ auth_time: now - 60 })
      .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
      .setIssuer(`https://securetoken.google.com/${PROJECT}`)
      .setAudience(PROJECT)
      .setSubject(sub)
      .setIssuedAt(now - 10)
      .setExpirationTime(now + 3600)
      .sign(signingKey);
  };
  const async = { prefer: 'respond-async' };

  it('accepts an API key made by the command, as its user, until it is revoked', async () => {
    const created = await keys('create', 'key-user', '--label', 'laptop');
    expect(created.code).toBe(0);
    const key = /crk_\S+/.exec(created.out)?.[0];
    expect(key).toBeDefined();
    const answer = await prompt(service, undefined, { message: 'hello' }, { authorization: `Bearer ${key}`, ...async });
    expect(answer.status).toBe(202);
    const list = await call(service, 'GET', '/api/conversations', { headers: { authorization: `Bearer ${key}` } });
    expect((list.body.conversations as unknown[]).length).toBe(1);

    const listed = await keys('list', 'key-user');
    expect(listed.out).toContain('laptop');
    expect(listed.out).not.toContain(key!.slice('crk_'.length + 12 + 1));
    const id = key!.split('_')[1]!;
    expect((await keys('revoke', id)).code).toBe(0);
    const refused = await prompt(service, undefined, { message: 'again' }, { authorization: `Bearer ${key}` });
    expect(refused.status).toBe(401);
    expect(refused.body).toMatchObject({ error: { code: 'unauthenticated', message: 'the API key is not valid (unknown or revoked)' } });
  });

  it('accepts a Firebase ID token as its subject, and keeps users apart', async () => {
    const token = await idToken('firebase-user');
    const answer = await prompt(service, undefined, { message: 'from the web' }, { authorization: `Bearer ${token}`, ...async });
    expect(answer.status).toBe(202);
    const theirs = `/api/conversations/${String(answer.body.conversationId)}`;
    expect((await call(service, 'GET', theirs, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    expect((await call(service, 'GET', theirs, { headers: { authorization: `Bearer ${await idToken('someone-else')}` } })).status).toBe(404);
  });

  it('refuses what is not a verified identity, each with a 401 that says why', async () => {
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{}, /missing bearer token \(this service accepts an API key or a Firebase ID token\)/],
      [{ 'x-user-id': 'mallory' }, /missing bearer token/],
      [{ authorization: 'Bearer crk_000000000000_forged' }, /not valid|not an API key/],
      [{ authorization: 'Bearer not.a.token' }, /malformed/],
      [{ authorization: `Bearer ${await idToken('alice')}`, 'x-user-id': 'bob' }, /X-User-Id does not match/],
    ];
    for (const [headers, message] of cases) {
      const answer = await prompt(service, undefined, { message: 'let me in' }, headers);
      expect(answer.status, JSON.stringify(headers)).toBe(401);
      expect((answer.body.error as { message: string }).message).toMatch(message);
    }
  });
});
