import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFirestoreEmulator, firestoreEmulatorUnavailable, type FirestoreEmulator } from '../support/firestore-emulator.js';
import type { SandboxLauncher } from '../../functions/src/sandbox/launcher.js';
import { ManualLauncher } from '../support/manual-launcher.js';
import { call, linkPath, prompt, startService, type RunningService } from '../support/service.js';

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
    ['CONNECT', 'CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n', '400'],
    [
      'a gzip body that is not gzip',
      'POST /api/conversation HTTP/1.1\r\nHost: x\r\nX-User-Id: a\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello',
      '400',
    ],
    [
      'a body declared larger than any route takes',
      'POST /api/conversation HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 300000000\r\n\r\n{',
      '413',
    ],
  ])('answers %s with a JSON error', async (_what, bytes, status) => {
    const answer = await rawRequest(service.port, bytes);
    expect(answer.status).toMatch(new RegExp(`^HTTP/1.1 ${status} `));
    expect(answer.contentType).toMatch(/^application\/json/);
    expect(JSON.parse(answer.body)).toMatchObject({ error: { code: expect.any(String), message: expect.any(String) } });
    expect(answer.body).not.toContain(dataDir);
  });

  it('stops reading an unauthenticated body past the limit, whatever its framing says', async () => {
    const before = process.memoryUsage().rss;
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const request = http.request(
        { host: '127.0.0.1', port: service.port, method: 'POST', path: '/api/conversation', headers: { 'content-type': 'application/json' } },
        (response) => {
          let body = '';
          response.on('data', (chunk: Buffer) => (body += chunk.toString()));
          response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
        },
      );
      request.on('error', reject);
      // Chunked, with no length to refuse it by: 100 MB of a message.
      const piece = Buffer.alloc(1024 * 1024, 'a');
      request.write('{"message":"');
      let sent = 0;
      const pump = () => {
        while (sent < 100 && request.write(piece)) sent += 1;
        if (sent < 100) request.once('drain', pump);
        else request.end('"}');
      };
      pump();
    }).catch((error: unknown) => ({ status: 0, body: String(error) }));
    // The refusal, or the connection cut once it was sent; never the whole body read.
    if (answer.status !== 0) {
      expect(answer.status).toBe(413);
      expect(JSON.parse(answer.body)).toMatchObject({ error: { code: 'too_large' } });
    }
    expect(process.memoryUsage().rss - before).toBeLessThan(200 * 1024 * 1024);
  });

  it('keeps the data dir owner-only, however it was made', () => {
    expect(mode(dataDir)).toBe(0o700);
    for (const file of ['clauderun.db', 'clauderun.db-wal', 'clauderun.db-shm', 'token-secret'])
      expect(mode(path.join(dataDir, file)), file).toBe(0o600);
  });
});

/** Ids a client makes up reach the store only if they are of the API's own shape. */
describe.skipIf(firestoreEmulatorUnavailable() !== undefined)("a hostile client's ids, on Firestore", () => {
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
    service = await startService({ CLAUDERUN_MAX_OPEN_REQUESTS_PER_USER: '3' }, undefined, { launcher });
  });
  afterAll(async () => service?.stop({ removeData: true }));

  it('gets at most its cap of streams at once; a closed one frees its place; other users are not affected', async () => {
    const started = await prompt(service, 'hoarder', { message: 'hi' }, { prefer: 'respond-async' });
    const events = `${service.url}${linkPath((started.body.links as { events: string }).events)}`;
    const open = async (userId: string) => {
      const controller = new AbortController();
      const response = await fetch(events, { headers: { 'x-user-id': userId }, signal: controller.signal });
      return { response, close: () => controller.abort() };
    };
    const held = await Promise.all([open('hoarder'), open('hoarder'), open('hoarder')]);
    expect(held.map((s) => s.response.status)).toEqual([200, 200, 200]);
    const fourth = await open('hoarder');
    expect(fourth.response.status).toBe(429);
    expect(await fourth.response.json()).toMatchObject({ error: { code: 'rate_limited', details: { limit: 'open_requests', max: 3 } } });
    // Someone else's stream of the same turn is their 404, not a 429: the cap is per user.
    expect((await open('bystander')).response.status).toBe(404);
    held[0]?.close();
    await expect
      .poll(async () => {
        const again = await open('hoarder');
        again.close();
        return again.response.status;
      })
      .toBe(200);
    for (const stream of held) stream.close();
  });
});

describe('a hostile client holding prompts open', () => {
  const launcher = new ManualLauncher();
  let service: RunningService;
  beforeAll(async () => {
    service = await startService({ CLAUDERUN_MAX_OPEN_REQUESTS_PER_USER: '3' }, undefined, { launcher });
  });
  afterAll(async () => service?.stop({ removeData: true }));

  it('waits on at most its cap of answers at once (retries of one turn included); a refused wait starts nothing', async () => {
    const waits = Array.from({ length: 3 }, () => {
      const controller = new AbortController();
      const answer = fetch(`${service.url}/api/conversation`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-user-id': 'waiter', 'idempotency-key': 'same-turn' },
        body: JSON.stringify({ message: 'hi' }),
        signal: controller.signal,
      }).catch(() => undefined);
      return { answer, hangUp: () => controller.abort() };
    });
    await expect.poll(() => launcher.sandboxes.length).toBe(1);
    const launched = launcher.sandboxes.length;
    const fourth = await prompt(service, 'waiter', { message: 'another' });
    expect(fourth.status).toBe(429);
    expect(fourth.body).toMatchObject({ error: { details: { limit: 'open_requests', max: 3 } } });
    expect(launcher.sandboxes.length).toBe(launched);
    // A client that hangs up gives its place back: the next wait is taken (it waits, not 429).
    waits[0]?.hangUp();
    const statusWithin = async (ms: number) => {
      const answer = await fetch(`${service.url}/api/conversation`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-user-id': 'waiter', 'idempotency-key': 'same-turn' },
        body: JSON.stringify({ message: 'hi' }),
        signal: AbortSignal.timeout(ms),
      }).catch(() => undefined);
      return answer === undefined ? 'waiting' : answer.status;
    };
    await expect.poll(() => statusWithin(500)).toBe('waiting');
    for (const wait of waits) wait.hangUp();
  });
});

describe('a sandbox that cannot be started, for reasons naming host paths', () => {
  const failing: SandboxLauncher = {
    name: 'failing',
    sandboxesOutliveProcess: false,
    launch: () => Promise.reject(new Error('ENAMETOOLONG: /srv/secret-host-dir/sandboxes/x could not be made')),
    reattach: () => undefined,
    status: async () => undefined,
    close: async () => {},
  };
  let service: RunningService;
  beforeAll(async () => {
    service = await startService({}, undefined, { launcher: failing });
  });
  afterAll(async () => service?.stop({ removeData: true }));

  it('tells the client the turn failed without the host path, which only the log has', async () => {
    const answer = await prompt(service, 'unlucky', { message: 'hi' });
    expect(answer.status).toBe(502);
    expect(answer.body).toMatchObject({ error: { code: 'sandbox_failed', details: { status: 'failed' } } });
    expect(JSON.stringify(answer.body)).not.toContain('/srv/secret-host-dir');
    expect(service.logs.some((line) => line.includes('/srv/secret-host-dir'))).toBe(true);
  });
});
