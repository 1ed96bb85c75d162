import type { IncomingHttpHeaders } from 'node:http';
import type { ApiKeyStore } from '../store/api-key-store.js';
import { hashApiKey, parseApiKey } from './api-keys.js';
import type { Authenticator, AuthResult } from './authenticator.js';

const BEARER = /^Bearer +(\S+) *$/i;

/**
 * `Authorization: Bearer crk_…`: the key is looked up by its SHA-256, so the secret is never
 * compared byte by byte here (no timing leak) and never stored.
 */
export class ApiKeyAuthenticator implements Authenticator {
  constructor(private readonly store: ApiKeyStore) {}

  async authenticate(headers: IncomingHttpHeaders): Promise<AuthResult> {
    const match = BEARER.exec(headers.authorization ?? '');
    if (!match) return { ok: false, message: 'missing bearer token' };
    const parsed = parseApiKey(match[1]!);
    if (parsed === undefined) return { ok: false, message: 'not an API key' };
    const record = await this.store.findByHash(hashApiKey(parsed.key));
    if (record === undefined || record.id !== parsed.id) {
      return { ok: false, message: 'the API key is not valid (unknown or revoked)' };
    }
    return { ok: true, userId: record.userId };
  }
}
