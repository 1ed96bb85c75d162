import type { IncomingHttpHeaders } from 'node:http';
import { AuthMode } from '../contract/api.js';
import { isApiKeyLike } from '../contract/auth.js';
import type { Authenticator, AuthResult } from './authenticator.js';

export type { AuthMode };

/**
 * The configured auth modes together. A bearer credential goes to the mode its shape names (an
 * API key or a Firebase ID token); only without one does header mode trust X-User-Id. An
 * X-User-Id that disagrees with a verified identity is refused rather than ignored.
 */
export class CombinedAuthenticator implements Authenticator {
  constructor(private readonly modes: Partial<Record<AuthMode, Authenticator>>) {}

  async authenticate(headers: IncomingHttpHeaders): Promise<AuthResult> {
    const bearer = /^Bearer\s+(\S+)$/i.exec(headers.authorization ?? '')?.[1];
    if (bearer === undefined) {
      if (this.modes.header !== undefined) return this.modes.header.authenticate(headers);
      return { ok: false, message: `missing bearer token (${this.accepted()})` };
    }
    const mode: AuthMode = isApiKeyLike(bearer) ? AuthMode.enum.apikey : AuthMode.enum.firebase;
    const authenticator = this.modes[mode];
    if (authenticator === undefined) {
      return { ok: false, message: `${mode === AuthMode.enum.apikey ? 'API keys' : 'ID tokens'} are not accepted here (${this.accepted()})` };
    }
    const result = await authenticator.authenticate(headers);
    const claimed = headers['x-user-id'];
    if (result.ok && claimed !== undefined && claimed !== result.userId) {
      return { ok: false, message: 'X-User-Id does not match the authenticated user' };
    }
    return result;
  }

  private accepted(): string {
    const names: Record<AuthMode, string> = { header: 'an X-User-Id header', apikey: 'an API key', firebase: 'a Firebase ID token' };
    return `this service accepts ${(Object.keys(this.modes) as AuthMode[]).map((m) => names[m]).join(' or ')}`;
  }
}
