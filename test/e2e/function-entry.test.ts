import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { fillPath, INTERNAL_ROUTES } from '../../functions/src/contract/routes.js';
import { TurnTokens } from '../../functions/src/conversations/turn-token.js';
import { parseControl } from '../../functions/src/egress/tunnel-protocol.js';
import { startFakeAnthropic, type FakeAnthropic } from '../fixtures/fake-anthropic.js';
import { startFakeCloudRun, type FakeCloudRun } from '../fixtures/fake-cloud-run.js';
import { ManualLauncher } from '../support/manual-launcher.js';
import { prompt } from '../support/service.js';
import { startServiceProcess, type ServiceProcess } from '../support/service-process.js';

/**
 * The function as Cloud Functions runs it: `functions-framework --target=clauderun`, whose own
 * server parses bodies before our code runs (functions-framework-nodejs#686).
 */
const TOKEN_SECRET = 'function-entry-test-secret-of-32-characters-or-more';

/** What a tunnel's WebSocket met: the HTTP answer that refused the upgrade, or the controls and close it got. */
function openTunnel(
  url: string,
  token: string,
): Promise<{ status?: number; body?: unknown; controls: unknown[]; close?: { code: number; reason: string } }> {
  return new Promise((resolve) => {
    const controls: unknown[] = [];
    const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}` } });
    ws.on('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => (text += String(chunk)));
      res.on('end', () => resolve({ status: res.statusCode, body: JSON.parse(text) as unknown, controls }));
    });
    ws.on('message', (data, isBinary) => {
      if (!isBinary) controls.push(parseControl(String(data)));
    });
    ws.on('error', () => {});
    ws.on('close', (code, reason) => resolve({ controls, close: { code, reason: reason.toString() } }));
  });
}

describe("the HTTP function on the Functions Framework's own server", () => {
  let fake: FakeAnthropic;
  let dataDir: string;
  let fn: ServiceProcess;
  beforeAll(async () => {
    fake = await startFakeAnthropic();
    dataDir = await mkdtemp(path.join(tmpdir(), 'clauderun-function-'));
    fn = await startServiceProcess(
      { CLAUDERUN_DATA_DIR: dataDir, ANTHROPIC_API_KEY: fake.apiKey, ANTHROPIC_BASE_URL: fake.url, CLAUDERUN_TOKEN_SECRET: TOKEN_SECRET },
      'function',
    );
  });
  afterAll(async () => {
    await fn?.stop();
    await fake?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('answers a turn as `npm start` does', async () => {
    const answer = await prompt(fn, 'fn-user', { message: 'hello from the framework' });
    expect(answer.status, `${JSON.stringify(answer.body)}\n${fn.output()}`).toBe(200);
    expect(answer.body).toMatchObject({ status: 'succeeded', text: 'echo: hello from the framework' });
  });

  const send = (headers: Record<string, string>, body: string) =>
    fetch(`${fn.url}/api/conversation`, { method: 'POST', headers: { 'x-user-id': 'fn-user', ...headers }, body });

  it.each([
    ['malformed JSON', { 'content-type': 'application/json' }, '{broken', 400, /not valid JSON/],
    ['an unknown charset', { 'content-type': 'application/json; charset=klingon' }, '{}', 400, /message must be a string/],
    [
      'an unknown content encoding',
      { 'content-type': 'application/json', 'content-encoding': 'zstd-9000' },
      '{}',
      400,
      /Content-Encoding zstd-9000 is not accepted/,
    ],
  ])(
    'answers a body with %s, which the framework would refuse with a page of its own, with a JSON error',
    async (_what, headers, body, status, message) => {
      const response = await send(headers, body);
      expect(response.status).toBe(status);
      expect(response.headers.get('content-type')).toMatch(/^application\/json/);
      const error = ((await response.json()) as { error: { code: string; message: string } }).error;
      expect(error).toMatchObject({ code: 'invalid_request', message: expect.stringMatching(message) });
      expect(JSON.stringify(error)).not.toMatch(/node_modules|at JSON\.parse/);
    },
  );

  it('refuses a compressed body before the framework would inflate it, on any path: a 200 KB gzip of 200 MB of zeros costs nothing', async () => {
    const before = await fn.rss();
    const bomb = gzipSync(Buffer.alloc(200 * 1024 * 1024), { level: 9 });
    for (const route of ['/api/conversation', '/healthz', '/no-such-route']) {
      const response = await fetch(`${fn.url}${route}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
        body: bomb,
      });
      expect(response.status).toBe(400);
      expect(await response.json()).toMatchObject({
        error: { code: 'invalid_request', message: expect.stringMatching(/Content-Encoding gzip is not accepted/) },
      });
    }
    expect(await fn.rss()).toBeLessThan(before + 64 * 1024 * 1024);
  });

  it('refuses a body over what its routes take, on any path, before reading it whole: JSON 413', async () => {
    const big = JSON.stringify({ message: 'x'.repeat(2 * 1024 * 1024) });
    for (const route of ['/api/conversation', '/no-such-route']) {
      const response = await fetch(`${fn.url}${route}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-user-id': 'fn-user' },
        body: big,
      });
      expect(response.status).toBe(413);
      expect(await response.json()).toMatchObject({ error: { code: 'too_large', message: expect.stringMatching(/request body over the limit/) } });
    }
  });

  it('receives at most 4 workspace files at once before anyone is authenticated: a fifth is refused at once with 503, and a slot comes back when one ends', async () => {
    const route = '/api/conversations/c1/files/big.bin';
    const slow = Array.from({ length: 4 }, () => {
      const request = http.request(fn.url, { method: 'PUT', path: route, headers: { 'content-length': String(1024 * 1024) } });
      request.on('error', () => undefined);
      request.write(Buffer.alloc(1024));
      return request;
    });
    await sleep(300);
    const fifth = await fetch(`${fn.url}/api/conversations/c1/files/small.txt`, { method: 'PUT', body: 'x' });
    expect(fifth.status).toBe(503);
    expect(fifth.headers.get('retry-after')).toBe('1');
    expect(await fifth.json()).toMatchObject({
      error: { code: 'unavailable', message: expect.stringContaining('4 file uploads are being received') },
    });
    // Other requests are not held up by them.
    expect((await fetch(`${fn.url}/healthz`)).status).toBe(200);
    slow[0]?.destroy();
    await sleep(300);
    const after = await fetch(`${fn.url}/api/conversations/c1/files/small.txt`, { method: 'PUT', headers: { 'x-user-id': 'fn-user' }, body: 'x' });
    expect(after.status).toBe(404);
    for (const request of slow) request.destroy();
  });
});

/**
 * The runner's routes on the framework's port, as a cloud deployment serves them. The fake Cloud
 * Run takes the launch and starts nothing, so that the turn stays unfinished and its token valid.
 */
describe("the egress route on the Functions Framework's own server", () => {
  let cloud: ServiceProcess;
  let dataDir: string;
  let cloudRun: FakeCloudRun;
  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'clauderun-function-'));
    cloudRun = await startFakeCloudRun({ sandboxFor: async () => new ManualLauncher(), startDelayMs: 10 * 60_000 });
    cloud = await startServiceProcess(
      {
        CLAUDERUN_DATA_DIR: dataDir,
        CLAUDERUN_TOKEN_SECRET: TOKEN_SECRET,
        CLAUDERUN_SANDBOX: 'cloudrun',
        CLAUDERUN_CLOUDRUN_JOB: 'projects/test/locations/here/jobs/sandbox',
        CLAUDERUN_CLOUDRUN_ENDPOINT: `http://${cloudRun.host}:${cloudRun.port}`,
        // Where sandboxes would reach the API: no sandbox starts here.
        CLAUDERUN_API_URL: 'http://127.0.0.1:9',
      },
      'function',
    );
  });
  afterAll(async () => {
    await cloud?.stop();
    await cloudRun?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it("takes the egress route's WebSocket upgrade, which the framework's server passes on as a request: the tunnel authenticates and asks the policy (an empty allowlist: refused before any WebSocket)", async () => {
    const started = await prompt(cloud, 'cloud-egress', { message: 'bash: node -e "setTimeout(() => {}, 20000)"' }, { prefer: 'respond-async' });
    expect(started.status, JSON.stringify(started.body)).toBe(202);
    const { turnId, conversationId } = started.body as { turnId: string; conversationId: string };
    const path = `${fillPath(INTERNAL_ROUTES.egress, { turnId })}?host=example.com&port=443&mode=tls`;
    const url = `${cloud.url.replace(/^http/, 'ws')}${path}`;

    expect(await openTunnel(url, 'crt1.forged.token')).toMatchObject({ status: 401 });
    const token = new TurnTokens(TOKEN_SECRET).mint({ turnId, conversationId, userId: 'cloud-egress', exp: Math.floor(Date.now() / 1000) + 60 });
    const tunnel = await openTunnel(url, token);
    expect(tunnel, cloud.output()).toMatchObject({
      status: 403,
      body: { error: { code: 'forbidden', message: expect.stringContaining('this deployment does not allow example.com:443') } },
    });
    await fetch(`${cloud.url}/api/conversations/${conversationId}/turns/${turnId}/cancel`, {
      method: 'POST',
      headers: { 'x-user-id': 'cloud-egress' },
    });
  });
});
