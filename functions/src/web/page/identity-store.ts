import type { Identity } from './api.js';

const KEY = 'clauderun.identity';

/**
 * The signed-in identity, in sessionStorage: it lives as long as the tab, is never sent by the
 * browser on its own (unlike a cookie, so there is nothing to forge a request with) and is gone
 * at sign-out.
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

function parseIdentity(value: unknown): Identity | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  if (v.mode === 'header' && isString(v.userId)) return { mode: 'header', userId: v.userId };
  if (v.mode === 'apikey' && isString(v.key)) return { mode: 'apikey', key: v.key };
  if (v.mode === 'firebase' && isString(v.idToken) && isString(v.email) && typeof v.expiresAt === 'number') {
    return { mode: 'firebase', idToken: v.idToken, email: v.email, expiresAt: v.expiresAt };
  }
  return undefined;
}

/** Who the page shows as signed in: never a secret. */
export function displayName(identity: Identity): string {
  if (identity.mode === 'header') return identity.userId;
  if (identity.mode === 'firebase') return identity.email;
  // crk_<id>_<secret>: the id names the key without revealing it.
  return `API key ${identity.key.split('_')[1] ?? ''}`.trim();
}

/** True when a Firebase ID token has expired (they last an hour); other identities do not expire here. */
export function hasExpired(identity: Identity, now = Date.now()): boolean {
  return identity.mode === 'firebase' && identity.expiresAt <= now;
}
