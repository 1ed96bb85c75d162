import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';

/**
 * A stand-in for Firebase Auth as the web page and the API meet it: the Identity Toolkit's
 * `POST /v1/accounts:signInWithPassword?key=…` (with CORS, since the page calls it from another
 * origin) issues ID tokens signed with a local key, and `GET /jwks` publishes that key the way
 * Google's key set does for the API to verify them.
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
  /** CLAUDERUN_FIREBASE_JWKS_URL */
  jwksUrl: string;
  /** FIREBASE_WEB_API_KEY */
  apiKey: string;
  /** How many sign-in calls were answered, successful or not. */
  signIns(): number;
  close(): Promise<void>;
}

const CORS = {
  'access-control-allow-origin': '*',
  'access-control-allow-methods': 'POST',
  'access-control-allow-headers': 'content-type',
};

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
  } catch {
    return {};
  }
}

export async function startFakeIdentityToolkit(
  project: string,
  users: Record<string, FakeUser>,
  apiKey = 'fake-web-api-key',
): Promise<FakeIdentityToolkit> {
  const { privateKey, publicKey } = await generateKeyPair('RS256');
  const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' }] });
  let signIns = 0;

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

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (req.method === 'GET' && url.pathname === '/jwks') return void res.writeHead(200, { 'content-type': 'application/json' }).end(jwks);
    if (url.pathname !== '/v1/accounts:signInWithPassword') return reply(res, 404, { error: { code: 404, message: 'NOT_FOUND' } });
    if (req.method === 'OPTIONS') return void res.writeHead(204, CORS).end();
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
        refreshToken: `fake-refresh-${user.uid}`,
        expiresIn: '3600',
      });
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    jwksUrl: `${url}/jwks`,
    apiKey,
    signIns: () => signIns,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
