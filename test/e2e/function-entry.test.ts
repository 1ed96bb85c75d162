import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeAnthropic, type FakeAnthropic } from '../fixtures/fake-anthropic.js';
import { prompt } from '../support/service.js';
import { startServiceProcess, type ServiceProcess } from '../support/service-process.js';

/**
 * The function as Cloud Functions runs it: `functions-framework --target=clauderun`, whose own
 * server parses bodies before our code runs (functions-framework-nodejs#686).
 */
describe("the HTTP function on the Functions Framework's own server", () => {
  let fake: FakeAnthropic;
  let dataDir: string;
  let fn: ServiceProcess;
  beforeAll(async () => {
    fake = await startFakeAnthropic();
    dataDir = await mkdtemp(path.join(tmpdir(), 'clauderun-function-'));
    fn = await startServiceProcess({ CLAUDERUN_DATA_DIR: dataDir, ANTHROPIC_API_KEY: fake.apiKey, ANTHROPIC_BASE_URL: fake.url }, 'function');
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
});
