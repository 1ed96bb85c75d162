import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFirestoreEmulator, firestoreEmulatorUnavailable, type FirestoreEmulator } from '../support/firestore-emulator.js';
import { ManualLauncher } from '../support/manual-launcher.js';
import { call, prompt, startService, type RunningService } from '../support/service.js';

/** What the raw socket answers to bytes that are barely HTTP: status line, content type, body. */
async function rawRequest(port: number, bytes: string): Promise<{ status: string; contentType: string | undefined; body: string }> {
  const answer = await new Promise<string>((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let data = '';
    socket.on('data', (chunk) => (data += chunk.toString()));
    socket.on('close', () => resolve(data));
    socket.on('error', () => resolve(data));
    socket.write(bytes);
    setTimeout(() => socket.end(), 300);
  });
  const [head = '', ...rest] = answer.split('\r\n\r\n');
  return { status: head.split('\r\n')[0] ?? '', contentType: /content-type: ([^\r]+)/i.exec(head)?.[1], body: rest.join('\r\n\r\n') };
}

const mode = (file: string) => statSync(file).mode & 0o777;

describe('a hostile client, and the data dir', () => {
  let service: RunningService;
  let dataDir: string;
  beforeAll(async () => {
    // A data dir as an older version or a default umask left it: world-readable.
    dataDir = await mkdtemp(path.join(tmpdir(), 'clauderun-odd-'));
    mkdirSync(dataDir, { recursive: true, mode: 0o755 });
    writeFileSync(path.join(dataDir, 'clauderun.db'), '', { mode: 0o644 });
    writeFileSync(path.join(dataDir, 'token-secret'), 'a'.repeat(43), { mode: 0o644 });
    service = await startService({}, dataDir, { launcher: new ManualLauncher() });
  });
  afterAll(async () => {
    await service?.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it.each([
    ['a request target of *', 'OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n', '404'],
    ['an unknown method', 'BREW / HTTP/1.1\r\nHost: x\r\n\r\n', '400'],
    ['headers over the limit', `GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ${'a'.repeat(20_000)}\r\n\r\n`, '400'],
    ['bytes that are not HTTP', 'garbage\r\n\r\n', '400'],
    ['a path that is not valid percent-encoding', 'GET /api/conversations/%ZZ HTTP/1.1\r\nHost: x\r\nX-User-Id: a\r\n\r\n', '400'],
  ])('answers %s with a JSON error', async (_what, bytes, status) => {
    const answer = await rawRequest(service.port, bytes);
    expect(answer.status).toMatch(new RegExp(`^HTTP/1.1 ${status} `));
    expect(answer.contentType).toMatch(/^application\/json/);
    expect(JSON.parse(answer.body)).toMatchObject({ error: { code: expect.any(String), message: expect.any(String) } });
    expect(answer.body).not.toContain(dataDir);
  });

  it('keeps the data dir owner-only, however it was made', () => {
    expect(mode(dataDir)).toBe(0o700);
    for (const file of ['clauderun.db', 'clauderun.db-wal', 'clauderun.db-shm', 'token-secret']) expect(mode(path.join(dataDir, file)), file).toBe(0o600);
  });
});

/** Ids a client makes up reach the store only if they are of the API's own shape. */
describe.skipIf(firestoreEmulatorUnavailable() !== undefined)('a hostile client\'s ids, on Firestore', () => {
  let emulator: FirestoreEmulator | undefined;
  let service: RunningService;
  beforeAll(async () => {
    emulator = await startFirestoreEmulator();
    service = await startService(
      { CLAUDERUN_STORE: 'firestore', GOOGLE_CLOUD_PROJECT: 'odd-ids', FIRESTORE_EMULATOR_HOST: emulator?.host },
      undefined,
      { launcher: new ManualLauncher() },
    );
  });
  afterAll(async () => {
    await service?.stop({ removeData: true });
    await emulator?.stop();
  });

  it.each([
    ['a slash', 'a%2Fb'],
    ['a collection path', 'x%2Fturns%2Fy'],
    ['2,000 characters', 'a'.repeat(2000)],
    ['dots', '..'],
  ])('answers an id with %s as not found, in every route', async (_what, id) => {
    for (const path of [`/api/conversations/${id}`, `/api/conversations/${id}/turns/${id}`, `/api/conversations/${id}/turns/${id}/events`]) {
      const answer = await call(service, 'GET', path, { userId: 'prober' });
      expect(answer.status, path).toBe(404);
      expect(answer.body).toMatchObject({ error: { code: 'not_found' } });
    }
    expect((await call(service, 'DELETE', `/api/conversations/${id}`, { userId: 'prober' })).status).toBe(404);
    const posted = await prompt(service, 'prober', { message: 'hi', conversationId: decodeURIComponent(id) });
    expect(posted.status).toBe(400);
  });
});

describe('a hostile client holding event streams open', () => {
  const launcher = new ManualLauncher();
  let service: RunningService;
  beforeAll(async () => {
    service = await startService({ CLAUDERUN_MAX_EVENT_STREAMS_PER_USER: '3' }, undefined, { launcher });
  });
  afterAll(async () => service?.stop({ removeData: true }));

  it('gets at most its cap of streams at once; a closed one frees its place; other users are not affected', async () => {
    const started = await prompt(service, 'hoarder', { message: 'hi' }, { prefer: 'respond-async' });
    const events = `${service.url}${(started.body.links as { events: string }).events}`;
    const open = async (userId: string) => {
      const controller = new AbortController();
      const response = await fetch(events, { headers: { 'x-user-id': userId }, signal: controller.signal });
      return { response, close: () => controller.abort() };
    };
    const held = await Promise.all([open('hoarder'), open('hoarder'), open('hoarder')]);
    expect(held.map((s) => s.response.status)).toEqual([200, 200, 200]);
    const fourth = await open('hoarder');
    expect(fourth.response.status).toBe(429);
    expect(await fourth.response.json()).toMatchObject({ error: { code: 'rate_limited', details: { limit: 'event_streams', max: 3 } } });
    // Someone else's stream of the same turn is their 404, not a 429: the cap is per user.
    expect((await open('bystander')).response.status).toBe(404);
    held[0]?.close();
    await expect.poll(async () => {
      const again = await open('hoarder');
      again.close();
      return again.response.status;
    }).toBe(200);
    for (const stream of held) stream.close();
  });
});
