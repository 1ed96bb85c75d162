import type { AuthMode } from '../../contract/api.js';
import { AUTH_MODES, apiKeyIdOf } from '../../contract/auth.js';
import type { Identity } from './api.js';

const KEY = 'clauderun.identity';

/**
 * The signed-in identity, in sessionStorage: it lives as long as the tab, is never sent by the
 * browser on its own (unlike a cookie, so there is nothing to forge a request with) and is gone
 * at sign-out. With Firebase it includes the refresh token, which renews the ID token (see
 * token-renewal.ts): it is no more exposed here than the ID token is, and it dies with the tab.
 */
export class IdentityStore {
  constructor(private readonly storage: Storage) {}

  current(): Identity | undefined {
    const raw = this.storage.getItem(KEY);
    if (raw === null) return undefined;
    try {
      return parseIdentity(JSON.parse(raw));
    } catch {
      return undefined;
    }
  }

  save(identity: Identity): void {
    this.storage.setItem(KEY, JSON.stringify(identity));
  }

  clear(): void {
    this.storage.removeItem(KEY);
  }
}

const isString = (v: unknown): v is string => typeof v === 'string' && v !== '';

/** A kept identity of each mode, if what is kept is one. */
const PARSERS: { [M in AuthMode]: (v: Record<string, unknown>) => Extract<Identity, { mode: M }> | undefined } = {
  header: (v) => (isString(v.userId) ? { mode: 'header', userId: v.userId } : undefined),
  apikey: (v) => (isString(v.key) ? { mode: 'apikey', key: v.key } : undefined),
  firebase: (v) =>
    isString(v.idToken) && isString(v.refreshToken) && isString(v.email) && typeof v.expiresAt === 'number'
      ? { mode: 'firebase', idToken: v.idToken, refreshToken: v.refreshToken, email: v.email, expiresAt: v.expiresAt }
      : undefined,
};

function parseIdentity(value: unknown): Identity | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  const mode = AUTH_MODES.find((m) => m === v.mode);
  return mode === undefined ? undefined : PARSERS[mode](v);
}

/** Who the page shows as signed in: never a secret. */
export function displayName(identity: Identity): string {
  if (identity.mode === 'header') return identity.userId;
  if (identity.mode === 'firebase') return identity.email;
  // The id names the key without revealing it.
  return `API key ${apiKeyIdOf(identity.key) ?? ''}`.trim();
}

/** True when a Firebase ID token has expired (they last an hour) and must be renewed; other identities do not expire here. */
export function hasExpired(identity: Identity, now = Date.now()): boolean {
  return identity.mode === 'firebase' && identity.expiresAt <= now;
}
