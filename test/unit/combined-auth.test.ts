import type { IncomingHttpHeaders } from 'node:http';
import { describe, expect, it } from 'vitest';
import type { Authenticator } from '../../functions/src/auth/authenticator.js';
import { CombinedAuthenticator } from '../../functions/src/auth/combined.js';
import { HeaderAuthenticator } from '../../functions/src/auth/header.js';

/** Stands in for a verifying mode: accepts one credential for one user, records what it saw. */
function verifier(credential: string, userId: string): Authenticator & { seen: number } {
  const auth = {
    seen: 0,
    async authenticate(headers: IncomingHttpHeaders) {
      auth.seen += 1;
      return headers.authorization === `Bearer ${credential}` ? { ok: true as const, userId } : { ok: false as const, message: 'rejected' };
    },
  };
  return auth;
}

describe('combined auth modes', () => {
  it('sends an API key to the apikey mode and any other bearer token to the firebase mode', async () => {
    const apikey = verifier('crk_abc_secret', 'key-user');
    const firebase = verifier('eyJ.token', 'token-user');
    const auth = new CombinedAuthenticator({ apikey, firebase });
    expect(await auth.authenticate({ authorization: 'Bearer crk_abc_secret' })).toEqual({ ok: true, userId: 'key-user' });
    expect(await auth.authenticate({ authorization: 'Bearer eyJ.token' })).toEqual({ ok: true, userId: 'token-user' });
    expect(apikey.seen).toBe(1);
    expect(firebase.seen).toBe(1);
  });

  it('says which credentials it accepts when none is given, and never falls back to X-User-Id without header mode', async () => {
    const auth = new CombinedAuthenticator({ apikey: verifier('crk_a_b', 'u') });
    expect(await auth.authenticate({ 'x-user-id': 'mallory' })).toEqual({
      ok: false,
      message: 'missing bearer token (this service accepts an API key)',
    });
    expect(await auth.authenticate({ authorization: 'Bearer eyJ.token' })).toEqual({
      ok: false,
      message: 'ID tokens are not accepted here (this service accepts an API key)',
    });
  });

  it('refuses an X-User-Id that disagrees with the verified identity', async () => {
    const auth = new CombinedAuthenticator({ header: new HeaderAuthenticator(), apikey: verifier('crk_a_b', 'alice') });
    expect(await auth.authenticate({ authorization: 'Bearer crk_a_b', 'x-user-id': 'bob' })).toEqual({
      ok: false,
      message: 'X-User-Id does not match the authenticated user',
    });
    expect(await auth.authenticate({ authorization: 'Bearer crk_a_b', 'x-user-id': 'alice' })).toEqual({ ok: true, userId: 'alice' });
    expect(await auth.authenticate({ 'x-user-id': 'carol' })).toEqual({ ok: true, userId: 'carol' });
  });
});
