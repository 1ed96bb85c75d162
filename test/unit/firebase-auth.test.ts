import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWTPayload } from 'jose';
import { FirebaseAuthenticator } from '../../functions/src/auth/firebase.js';

const PROJECT = 'demo-project';
const KID = 'key-1';

let server: Server;
let jwksUrl: string;
let privateKey: CryptoKey;
let otherKey: CryptoKey;
let auth: FirebaseAuthenticator;

function listen(s: Server): Promise<number> {
  return new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve((s.address() as AddressInfo).port)));
}

function close(s: Server): Promise<void> {
  return new Promise((resolve, reject) => s.close((err) => (err ? reject(err) : resolve())));
}

function claims(overrides: JWTPayload = {}): JWTPayload {
  const now = Math.floor(Date.now() / 1000);
  return {
    iss: `https://securetoken.google.com/${PROJECT}`,
    aud: PROJECT,
    sub: 'user-123',
    iat: now - 10,
    auth_time: now - 60,
    exp: now + 3600,
    ...overrides,
  };
}

function sign(payload: JWTPayload = claims(), key: CryptoKey = privateKey, kid: string | null = KID): Promise<string> {
  return new SignJWT(payload).setProtectedHeader(kid === null ? { alg: 'RS256' } : { alg: 'RS256', kid }).sign(key);
}

function bearer(token: string) {
  return { authorization: `Bearer ${token}` };
}

function b64(value: object): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

beforeAll(async () => {
  const pair = await generateKeyPair('RS256');
  privateKey = pair.privateKey;
  otherKey = (await generateKeyPair('RS256')).privateKey;
  const jwk = { ...(await exportJWK(pair.publicKey)), kid: KID, alg: 'RS256', use: 'sig' };
  const body = JSON.stringify({ keys: [jwk] });
  server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(body);
  });
  jwksUrl = `http://127.0.0.1:${await listen(server)}/jwks`;
  auth = new FirebaseAuthenticator({ projectId: PROJECT, jwksUrl });
});

afterAll(async () => {
  await close(server);
});

describe('FirebaseAuthenticator', () => {
  it('accepts a valid ID token and uses sub as the user id', async () => {
    expect(await auth.authenticate(bearer(await sign()))).toEqual({ ok: true, userId: 'user-123' });
  });

  it('accepts a lower-case bearer scheme', async () => {
    expect(await auth.authenticate({ authorization: `bearer ${await sign()}` })).toEqual({ ok: true, userId: 'user-123' });
  });

  it('refuses an expired token', async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = await sign(claims({ iat: now - 7200, auth_time: now - 7200, exp: now - 60 }));
    expect(await auth.authenticate(bearer(token))).toEqual({ ok: false, message: 'the ID token has expired' });
  });

  it('refuses a token for another project', async () => {
    const token = await sign(claims({ aud: 'other-project' }));
    expect(await auth.authenticate(bearer(token))).toEqual({
      ok: false,
      message: 'the ID token is for another project (audience)',
    });
  });

  it('refuses a token from another issuer', async () => {
    const token = await sign(claims({ iss: 'https://securetoken.google.com/other-project' }));
    expect(await auth.authenticate(bearer(token))).toEqual({
      ok: false,
      message: 'the ID token was not issued by Firebase for this project (issuer)',
    });
  });

  it('refuses a token signed by another key under a published kid', async () => {
    const token = await sign(claims(), otherKey);
    expect(await auth.authenticate(bearer(token))).toEqual({ ok: false, message: "the ID token's signature is not valid" });
  });

  it('refuses a token signed by a key that is not published', async () => {
    const token = await sign(claims(), otherKey, 'unknown-key');
    expect(await auth.authenticate(bearer(token))).toEqual({
      ok: false,
      message: 'the ID token was signed with a key Firebase does not publish (kid)',
    });
  });

  it('refuses a token without a kid', async () => {
    const token = await sign(claims(), privateKey, null);
    expect(await auth.authenticate(bearer(token))).toEqual({ ok: false, message: 'the ID token has no key id (kid) header' });
  });

  it('refuses an unsigned (alg: none) token', async () => {
    const token = `${b64({ alg: 'none', kid: KID })}.${b64(claims())}.`;
    expect(await auth.authenticate(bearer(token))).toEqual({ ok: false, message: 'the ID token must be signed with RS256' });
  });

  it('refuses an HS256 token', async () => {
    const token = await new SignJWT(claims()).setProtectedHeader({ alg: 'HS256', kid: KID }).sign(new TextEncoder().encode('a'.repeat(32)));
    expect(await auth.authenticate(bearer(token))).toEqual({ ok: false, message: 'the ID token must be signed with RS256' });
  });

  it('refuses a request without an Authorization header', async () => {
    expect(await auth.authenticate({})).toEqual({ ok: false, message: 'missing bearer token' });
  });

  it.each(['Basic dXNlcjpwYXNz', 'Bearer', 'Bearer ', 'Token abc', 'abc.def.ghi'])('refuses the non-Bearer header %j', async (authorization) => {
    expect(await auth.authenticate({ authorization })).toEqual({ ok: false, message: 'missing bearer token' });
  });

  it('refuses a token with an empty sub', async () => {
    const token = await sign(claims({ sub: '' }));
    expect(await auth.authenticate(bearer(token))).toEqual({ ok: false, message: 'the ID token has no subject (sub)' });
  });

  it('refuses a token with a sub longer than 128 characters', async () => {
    const token = await sign(claims({ sub: 'u'.repeat(129) }));
    expect(await auth.authenticate(bearer(token))).toEqual({
      ok: false,
      message: 'the ID token subject (sub) is longer than 128 characters',
    });
  });

  it('refuses a token whose auth_time is in the future', async () => {
    const token = await sign(claims({ auth_time: Math.floor(Date.now() / 1000) + 600 }));
    expect(await auth.authenticate(bearer(token))).toEqual({
      ok: false,
      message: 'the ID token authentication time is in the future (auth_time)',
    });
  });

  it.each(['garbage', 'a.b.c', 'a.b', `${b64({ alg: 'RS256', kid: KID })}.!!!.???`])('refuses the garbage token %j', async (token) => {
    expect(await auth.authenticate(bearer(token))).toEqual({ ok: false, message: 'the ID token is malformed' });
  });

  it('says it cannot check tokens when the key set is unreachable, and logs no token', async () => {
    const closed = createServer();
    const port = await listen(closed);
    await close(closed);
    const logged: string[] = [];
    const offline = new FirebaseAuthenticator({
      projectId: PROJECT,
      jwksUrl: `http://127.0.0.1:${port}/jwks`,
      log: (message) => logged.push(message),
    });
    const token = await sign();
    expect(await offline.authenticate(bearer(token))).toEqual({ ok: false, message: 'cannot check ID tokens right now' });
    expect(logged).toHaveLength(1);
    expect(logged.join('\n')).not.toContain(token);
    expect(logged.join('\n')).not.toContain(token.split('.')[2]);
  });
});
