/**
 * How a caller proves who they are: the auth modes, and the shape of a clauderun API key. Imports
 * nothing: the web page tells keys and modes apart with it without zod (api.ts makes the zod enum).
 */

/** `header` trusts X-User-Id (local use only); `apikey` takes a clauderun API key; `firebase` a Firebase ID token. */
export const AUTH_MODES = ['header', 'apikey', 'firebase'] as const;

/*
 * A clauderun API key is `crk_<id>_<secret>`:
 *   id      12 lowercase hex characters (6 random bytes): names the key in listings and revocations
 *           without revealing it.
 *   secret  32 random bytes, base64url (43 characters, no padding).
 * Any other bearer token is taken for an ID token.
 */
export const API_KEY_PREFIX = 'crk_';
/** The id alone, as listings print it and revocations take it. */
export const API_KEY_ID = /^[0-9a-f]{12}$/;
const API_KEY = new RegExp(`^${API_KEY_PREFIX}(${API_KEY_ID.source.slice(1, -1)})_([A-Za-z0-9_-]{43})$`);

/** A key made of its id and secret. */
export const formatApiKey = (id: string, secret: string): string => `${API_KEY_PREFIX}${id}_${secret}`;

/** Whether a bearer token is meant as an API key (well formed or not), rather than an ID token. */
export const isApiKeyLike = (token: string): boolean => token.startsWith(API_KEY_PREFIX);

/** The key's id if `text` has the form of a clauderun API key; undefined otherwise. */
export function apiKeyIdOf(text: string): string | undefined {
  return API_KEY.exec(text)?.[1];
}
