import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';

/**
 * A stand-in for Firebase Auth as the web page and the API meet it, laid out as the Firebase Auth
 * emulator is (each Google API under its host name): the Identity Toolkit's
 * `POST /identitytoolkit.googleapis.com/v1/accounts:signInWithPassword?key=…` issues ID tokens signed
 * with a local key and a refresh token, the Secure Token API's
 * `POST /securetoken.googleapis.com/v1/token?key=…` exchanges a refresh token for a new ID token
 * (both with CORS, since the page calls them from another origin), and `GET /jwks` publishes the
 * key the way Google's key set does for the API to verify them.
 */

export interface FakeUser {
  password: string;
  uid: string;
  /** The project the user's tokens are for; another one than the API's makes them unacceptable there. */
  project?: string;
}

export interface FakeIdentityToolkit {
  /** CLAUDERUN_FIREBASE_AUTH_URL */
  url: string;
  /** Where the page renews ID tokens: beside `url`, as the emulator serves it. */
  tokenUrl: string;
  /** CLAUDERUN_FIREBASE_JWKS_URL */
  jwksUrl: string;
  /** FIREBASE_WEB_API_KEY */
  apiKey: string;
  /** How many sign-in calls were answered, successful or not. */
  signIns(): number;
  /** How many renewals (refresh token exchanges) were answered, successful or not. */
  renewals(): number;
  /** Revokes the refresh tokens issued so far to `email` (as revokeRefreshTokens does): TOKEN_EXPIRED. */
  revoke(email: string): void;
  close(): Promise<void>;
}

const CORS = {
  'access-control-allow-origin': '*',
  'access-control-allow-methods': 'POST',
  'access-control-allow-headers': 'content-type',
};

async function readText(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  try {
    return JSON.parse(await readText(req)) as Record<string, unknown>;
  } catch {
    return {};
  }
}

const SIGN_IN_PATH = '/identitytoolkit.googleapis.com/v1/accounts:signInWithPassword';
const TOKEN_PATH = '/securetoken.googleapis.com/v1/token';

export async function startFakeIdentityToolkit(
  project: string,
  users: Record<string, FakeUser>,
  apiKey = 'fake-web-api-key',
): Promise<FakeIdentityToolkit> {
  const { privateKey, publicKey } = await generateKeyPair('RS256');
  const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' }] });
  let signIns = 0;
  let renewals = 0;
  /** Each refresh token issued: whose, and whether it was revoked. */
  const refreshTokens = new Map<string, { email: string; revoked: boolean }>();
  const issueRefreshToken = (email: string, user: FakeUser) => {
    const token = `fake-refresh-${user.uid}-${refreshTokens.size + 1}`;
    refreshTokens.set(token, { email, revoked: false });
    return token;
  };

  const idToken = (email: string, user: FakeUser) => {
    const now = Math.floor(Date.now() / 1000);
    const audience = user.project ?? project;
    return new SignJWT({ auth_time: now, email, email_verified: true })
      .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
      .setIssuer(`https://securetoken.google.com/${audience}`)
      .setAudience(audience)
      .setSubject(user.uid)
      .setIssuedAt(now)
      .setExpirationTime(now + 3600)
      .sign(privateKey);
  };

  const reply = (res: ServerResponse, status: number, body: unknown) =>
    res.writeHead(status, { 'content-type': 'application/json', ...CORS }).end(JSON.stringify(body));
  const refuse = (res: ServerResponse, message: string) =>
    reply(res, 400, { error: { code: 400, message, errors: [{ message, domain: 'global', reason: 'invalid' }] } });
  // The Secure Token API's refusals carry a status instead of a list of errors.
  const refuseToken = (res: ServerResponse, message: string) => reply(res, 400, { error: { code: 400, message, status: 'INVALID_ARGUMENT' } });

  /** POST /v1/token: form-encoded `grant_type=refresh_token&refresh_token=…`, answered in snake_case. */
  const renew = async (req: IncomingMessage, res: ServerResponse, url: URL) => {
    renewals += 1;
    if (url.searchParams.get('key') !== apiKey) return refuse(res, 'API key not valid. Please pass a valid API key.');
    const form = new URLSearchParams(await readText(req));
    if (form.get('grant_type') !== 'refresh_token') return refuseToken(res, 'INVALID_GRANT_TYPE');
    const token = form.get('refresh_token') ?? '';
    const issued = refreshTokens.get(token);
    const user = issued === undefined ? undefined : users[issued.email];
    if (issued === undefined || user === undefined) return refuseToken(res, 'INVALID_REFRESH_TOKEN');
    if (issued.revoked) return refuseToken(res, 'TOKEN_EXPIRED');
    const renewed = await idToken(issued.email, user);
    reply(res, 200, {
      access_token: renewed,
      expires_in: '3600',
      token_type: 'Bearer',
      refresh_token: token,
      id_token: renewed,
      user_id: user.uid,
      project_id: user.project ?? project,
    });
  };

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (req.method === 'GET' && url.pathname === '/jwks') return void res.writeHead(200, { 'content-type': 'application/json' }).end(jwks);
    if (url.pathname !== SIGN_IN_PATH && url.pathname !== TOKEN_PATH) return reply(res, 404, { error: { code: 404, message: 'NOT_FOUND' } });
    if (req.method === 'OPTIONS') return void res.writeHead(204, CORS).end();
    if (url.pathname === TOKEN_PATH) return void renew(req, res, url);
    void (async () => {
      signIns += 1;
      if (url.searchParams.get('key') !== apiKey) return refuse(res, 'API key not valid. Please pass a valid API key.');
      const body = await readJson(req);
      const email = typeof body.email === 'string' ? body.email : '';
      const user = users[email];
      if (user === undefined || body.password !== user.password) return refuse(res, 'INVALID_LOGIN_CREDENTIALS');
      reply(res, 200, {
        kind: 'identitytoolkit#VerifyPasswordResponse',
        localId: user.uid,
        email,
        displayName: '',
        idToken: await idToken(email, user),
        registered: true,
        refreshToken: issueRefreshToken(email, user),
        expiresIn: '3600',
      });
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const root = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: `${root}/identitytoolkit.googleapis.com`,
    tokenUrl: `${root}/securetoken.googleapis.com`,
    jwksUrl: `${root}/jwks`,
    apiKey,
    signIns: () => signIns,
    renewals: () => renewals,
    revoke: (email) => {
      for (const issued of refreshTokens.values()) if (issued.email === email) issued.revoked = true;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
