import { createHash, randomBytes } from 'node:crypto';

/*
 * The one definition of a clauderun API key: `crk_<id>_<secret>`.
 *   id      12 lowercase hex characters (6 random bytes): names the key in listings and revocations
 *           without revealing it.
 *   secret  32 random bytes, base64url (43 characters, no padding).
 * Only hashApiKey(key) is ever stored.
 */

const PREFIX = 'crk_';
const KEY = /^crk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;
/** The id alone, as `list` prints it and `revoke` takes it. */
export const API_KEY_ID = /^[0-9a-f]{12}$/;

export function newApiKey(): { key: string; id: string } {
  const id = randomBytes(6).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  return { key: `${PREFIX}${id}_${secret}`, id };
}

/**
 * SHA-256 (hex) of the whole key. A fast, unsalted hash is right here, unlike for passwords: the
 * key carries 256 random bits, so there is nothing to guess or precompute, and a deterministic
 * hash is what lets a request find its key with one indexed lookup.
 */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** The key and its id if `text` has the form of a clauderun API key; undefined otherwise. */
export function parseApiKey(text: string): { id: string; key: string } | undefined {
  const match = KEY.exec(text);
  return match ? { id: match[1]!, key: text } : undefined;
}
