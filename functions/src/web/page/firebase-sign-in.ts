import type { ClientConfig } from '../../contract/api.js';
import type { Identity } from './api.js';
import { WordedError } from './errors.js';

type FirebaseSettings = NonNullable<ClientConfig['firebase']>;

/** What accounts:signInWithPassword answers (the fields used here). */
interface SignInAnswer {
  idToken?: unknown;
  expiresIn?: unknown;
  email?: unknown;
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

/** A minute less than the token's own lifetime, so it is never sent just as it expires. */
const EXPIRY_MARGIN_MS = 60_000;

/**
 * Email and password sign-in through the Identity Toolkit REST API: the same call the Firebase SDK
 * makes, without loading the SDK from elsewhere (the page's CSP allows only its own scripts).
 */
export async function signInWithPassword(firebase: FirebaseSettings, email: string, password: string): Promise<Identity> {
  const url = `${firebase.authUrl}/v1/accounts:signInWithPassword?key=${encodeURIComponent(firebase.apiKey)}`;
  let response: Response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ email, password, returnSecureToken: true }),
      cache: 'no-store',
    });
  } catch {
    throw new WordedError('Cannot reach the sign-in service. Check the connection and try again.');
  }
  const body: unknown = await response.json().catch(() => undefined);
  if (!response.ok) {
    const message = (body as { error?: { message?: unknown } } | undefined)?.error?.message;
    const text = typeof message === 'string' ? message : `HTTP ${response.status}`;
    // e.g. "TOO_MANY_ATTEMPTS_TRY_LATER : Access to this account has been temporarily disabled…"
    throw new WordedError(sentenceFor(text.split(' : ')[0]?.trim() ?? ''), text);
  }
  const answer = (body ?? {}) as SignInAnswer;
  const lifetimeSeconds = Number(answer.expiresIn);
  if (typeof answer.idToken !== 'string' || answer.idToken === '' || !Number.isFinite(lifetimeSeconds)) {
    throw new WordedError('Sign-in failed.', 'the sign-in service answered without an ID token');
  }
  return {
    mode: 'firebase',
    idToken: answer.idToken,
    email: typeof answer.email === 'string' && answer.email !== '' ? answer.email : email,
    expiresAt: Date.now() + lifetimeSeconds * 1000 - EXPIRY_MARGIN_MS,
  };
}
