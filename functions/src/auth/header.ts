import type { IncomingHttpHeaders } from 'node:http';
import type { Authenticator, AuthResult } from './authenticator.js';

const USER_ID = /^[A-Za-z0-9._@-]{1,128}$/;

/** Trusts the X-User-Id header, as the seed did. Local use only: config refuses it in the cloud. */
export class HeaderAuthenticator implements Authenticator {
  async authenticate(headers: IncomingHttpHeaders): Promise<AuthResult> {
    const value = headers['x-user-id'];
    if (value === undefined || value === '') return { ok: false, message: 'missing X-User-Id header' };
    if (Array.isArray(value) || !USER_ID.test(value)) {
      return { ok: false, message: 'X-User-Id must be 1-128 characters of letters, digits, ".", "_", "@" or "-"' };
    }
    return { ok: true, userId: value };
  }
}
