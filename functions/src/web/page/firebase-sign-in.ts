import type { ClientConfig } from '../../contract/api.js';
import type { Identity } from './api.js';
import { SignInEnded, WordedError } from './errors.js';

export type FirebaseSettings = NonNullable<ClientConfig['firebase']>;
export type FirebaseIdentity = Extract<Identity, { mode: 'firebase' }>;

/** What accounts:signInWithPassword answers (the fields used here). */
interface SignInAnswer {
  idToken?: unknown;
  refreshToken?: unknown;
  expiresIn?: unknown;
  email?: unknown;
}

/** What the Secure Token API's /v1/token answers (the fields used here): snake_case, unlike the Identity Toolkit. */
interface TokenAnswer {
  id_token?: unknown;
  refresh_token?: unknown;
  expires_in?: unknown;
}

/** The Identity Toolkit's error codes, in words. */
function sentenceFor(code: string): string {
  if (['INVALID_LOGIN_CREDENTIALS', 'EMAIL_NOT_FOUND', 'INVALID_PASSWORD'].includes(code)) return 'Wrong email or password.';
  if (code === 'INVALID_EMAIL') return 'That is not a valid email address.';
  if (code === 'USER_DISABLED') return 'This account is disabled.';
  if (code === 'TOO_MANY_ATTEMPTS_TRY_LATER') return 'Too many attempts — try again later.';
  if (code === 'PASSWORD_LOGIN_DISABLED' || code === 'OPERATION_NOT_ALLOWED') return 'Email and password sign-in is turned off for this project.';
  return 'Sign-in failed.';
}

/** Why the Secure Token API would not renew the ID token, in words. */
function renewalRefusedFor(code: string): string {
  if (code === 'TOKEN_EXPIRED') return 'Your sign-in is no longer valid (it was revoked, or the password was changed). Sign in again.';
  if (code === 'USER_DISABLED') return 'This account is disabled. Sign in with another one.';
  if (code === 'USER_NOT_FOUND') return 'This account no longer exists. Sign in with another one.';
  return 'Your sign-in could not be renewed. Sign in again.';
}

/** A minute less than the token's own lifetime, so it is never sent just as it expires. */
const EXPIRY_MARGIN_MS = 60_000;

/**
 * One call to a Firebase Auth REST API, answering its JSON. A refusal's code (e.g.
 * "TOO_MANY_ATTEMPTS_TRY_LATER : Access to this account has been temporarily disabled…") becomes
 * the error `refused` makes; no answer at all is a connection problem, not a refusal.
 */
async function callFirebase(url: string, init: RequestInit, refused: (code: string, text: string, status: number) => Error): Promise<unknown> {
  let response: Response;
  try {
    response = await fetch(url, { ...init, method: 'POST', cache: 'no-store' });
  } catch {
    throw new WordedError('Cannot reach the sign-in service. Check the connection and try again.');
  }
  const body: unknown = await response.json().catch(() => undefined);
  if (!response.ok) {
    const message = (body as { error?: { message?: unknown } } | undefined)?.error?.message;
    const text = typeof message === 'string' ? message : `HTTP ${response.status}`;
    throw refused(text.split(' : ')[0]?.trim() ?? '', text, response.status);
  }
  return body ?? {};
}

/** An answer's ID token with its expiry as the page counts it, or undefined when it has no usable one. */
function idTokenOf(idToken: unknown, lifetimeSeconds: unknown): { idToken: string; expiresAt: number } | undefined {
  const seconds = Number(lifetimeSeconds);
  if (typeof idToken !== 'string' || idToken === '' || !Number.isFinite(seconds)) return undefined;
  return { idToken, expiresAt: Date.now() + seconds * 1000 - EXPIRY_MARGIN_MS };
}

const keyed = (base: string, path: string, firebase: FirebaseSettings) => `${base}${path}?key=${encodeURIComponent(firebase.apiKey)}`;

/**
 * Email and password sign-in through the Identity Toolkit REST API: the same call the Firebase SDK
 * makes, without loading the SDK from elsewhere (the page's CSP allows only its own scripts).
 */
export async function signInWithPassword(firebase: FirebaseSettings, email: string, password: string): Promise<FirebaseIdentity> {
  const answer = (await callFirebase(
    keyed(firebase.authUrl, '/v1/accounts:signInWithPassword', firebase),
    { headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ email, password, returnSecureToken: true }) },
    (code, text) => new WordedError(sentenceFor(code), text),
  )) as SignInAnswer;
  const token = idTokenOf(answer.idToken, answer.expiresIn);
  if (token === undefined || typeof answer.refreshToken !== 'string' || answer.refreshToken === '') {
    throw new WordedError('Sign-in failed.', 'the sign-in service answered without an ID token and a refresh token');
  }
  return {
    mode: 'firebase',
    ...token,
    refreshToken: answer.refreshToken,
    email: typeof answer.email === 'string' && answer.email !== '' ? answer.email : email,
  };
}

/**
 * A new ID token for the same user, from the refresh token, through the Secure Token API (as the
 * Firebase SDK renews it): the ID token lasts an hour, the sign-in until it is revoked.
 */
export async function renewIdToken(firebase: FirebaseSettings, identity: FirebaseIdentity): Promise<FirebaseIdentity> {
  const answer = (await callFirebase(
    keyed(firebase.tokenUrl, '/v1/token', firebase),
    {
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: identity.refreshToken }).toString(),
    },
    // Only a refusal ends the sign-in: a failing service may well renew the token next time.
    (code, text, status) =>
      status >= 500
        ? new WordedError('The sign-in service is not available right now. Try again shortly.', text)
        : new SignInEnded(renewalRefusedFor(code), text),
  )) as TokenAnswer;
  const token = idTokenOf(answer.id_token, answer.expires_in);
  if (token === undefined) throw new WordedError('Your sign-in could not be renewed.', 'the token service answered without an ID token');
  return {
    ...identity,
    ...token,
    // Google answers the same refresh token today, but may rotate it.
    refreshToken: typeof answer.refresh_token === 'string' && answer.refresh_token !== '' ? answer.refresh_token : identity.refreshToken,
  };
}
