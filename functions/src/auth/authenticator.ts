import type { IncomingHttpHeaders } from 'node:http';

export type AuthResult = { ok: true; userId: string } | { ok: false; message: string };

/** Who is calling: one implementation per auth mode. */
export interface Authenticator {
  authenticate(headers: IncomingHttpHeaders): Promise<AuthResult>;
}
