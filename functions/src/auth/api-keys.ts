import { createHash, randomBytes } from 'node:crypto';
import { API_KEY_ID, apiKeyIdOf, formatApiKey } from '../contract/auth.js';

/** Making and checking clauderun API keys, whose shape is the contract's (contract/auth.ts). Only hashApiKey(key) is ever stored. */

/** The id alone, as `list` prints it and `revoke` takes it. */
export { API_KEY_ID };

export function newApiKey(): { key: string; id: string } {
  const id = randomBytes(6).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  return { key: formatApiKey(id, secret), id };
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
  const id = apiKeyIdOf(text);
  return id === undefined ? undefined : { id, key: text };
}
