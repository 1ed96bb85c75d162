import { readFile, mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SandboxLauncher } from '../../functions/src/sandbox/launcher.js';
import { projectRoot } from '../../functions/src/project-root.js';
import { startFakeCloudRun, type FakeCloudRun } from '../fixtures/fake-cloud-run.js';
import { startPlatform, type Platform } from '../sim/platform/index.js';
import { startGoogleIdTokens, startScheduler } from '../sim/platform/scheduler.js';
import { RUNNER_ENV } from '../../functions/src/contract/runner-env.js';

/**
 * The simulated platform's own behaviours, on a probe function (test/sim/platform/probe-function.ts)
 * served by the Functions Framework in processes of their own, as the API is.
 */

const PROBE = { dir: path.join(projectRoot(), 'dist', 'test', 'sim', 'platform', 'probe-function.js'), target: 'probe' };
const MB = 1024 * 1024;

/** The state letter of /proc/PID/stat: T when stopped by a signal. */
async function processState(pid: number): Promise<string> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
}

const alive = (pid: number) =>
  readFile(`/proc/${pid}/stat`).then(
    () => true,
    () => false,
  );

async function json(url: string, init?: RequestInit): Promise<{ status: number; type: string; body: Record<string, unknown> | string }> {
  const response = await fetch(url, init);
  const text = await response.text();
  const type = response.headers.get('content-type') ?? '';
  return { status: response.status, type, body: type.includes('json') ? (JSON.parse(text) as Record<string, unknown>) : text };
}

describe('the simulated platform', () => {
  let platform: Platform;
  let dataDir: string;
  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'clauderun-platform-'));
    platform = await startPlatform({ names: ['probe', 'packed', 'narrow', 'slow', 'idle'], dataDir, log: () => {} });
    platform.deploy({ name: 'probe', source: PROBE, env: {} });
    platform.deploy({ name: 'packed', source: PROBE, env: {}, maxInstances: 1, concurrency: 2, pendingTimeoutMs: 10_000 });
    platform.deploy({ name: 'narrow', source: PROBE, env: {}, maxInstances: 1, concurrency: 1, pendingTimeoutMs: 300 });
    platform.deploy({ name: 'slow', source: PROBE, env: {}, timeoutSeconds: 1 });
    platform.deploy({ name: 'idle', source: PROBE, env: {}, idleStopMs: 1000 });
  });
  afterAll(async () => {
    await platform?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('serves a function under its name on the cloudfunctions.net-style origin, the name stripped, and at the root of its run.app-style origin', async () => {
    const prefixed = platform.prefixedUrl('probe');
    expect(await json(`${prefixed}/whoami?x=1`)).toMatchObject({
      status: 200,
      body: { path: '/whoami?x=1', env: { K_SERVICE: 'probe', FUNCTION_TARGET: 'probe' } },
    });
    // `/NAME` alone is the function's root; the probe's own JSON 404 shows the function answered.
    expect(await json(prefixed)).toMatchObject({ status: 404, body: { error: 'no such probe' } });
    expect(await json(`${platform.rootUrl('probe')}/whoami`)).toMatchObject({ status: 200, body: { path: '/whoami' } });
    // Anything else on the shared origin is Google's own 404, not the function's.
    const origin = new URL(prefixed).origin;
    for (const stray of [`${origin}/whoami`, `${origin}/nosuchfunction/whoami`, `${origin}/`]) {
      const answer = await json(stray);
      expect(answer.status, stray).toBe(404);
      expect(answer.type, stray).toContain('text/html');
    }
  });

  it('freezes an instance with no request in flight: its timers do not run until a request comes', async () => {
    const first = await json(`${platform.rootUrl('probe')}/whoami`);
    const pid = (first.body as { pid: number }).pid;
    await sleep(100);
    expect(await processState(pid)).toBe('T');
    const before = (first.body as { ticks: number }).ticks;
    await sleep(1000);
    // A 50 ms timer would have ticked 20 times in that second.
    const after = (await json(`${platform.rootUrl('probe')}/whoami`)).body as { ticks: number; pid: number };
    expect(after.pid).toBe(pid);
    expect(after.ticks - before).toBeLessThan(5);
    // While a request is in flight it runs.
    const waiting = json(`${platform.rootUrl('probe')}/wait?n=600`);
    await sleep(300);
    expect(await processState(pid)).not.toBe('T');
    expect((await waiting).status).toBe(200);
    await sleep(100);
    expect(await processState(pid)).toBe('T');
  });

  it('starts an instance on demand and stops it once idle; the next request starts a new one, which loads the module again', async () => {
    const pool = platform.pool('idle');
    expect(pool.instances).toHaveLength(0);
    const first = (await json(`${platform.rootUrl('idle')}/whoami`)).body as { pid: number; bootedAt: number };
    expect(pool.instances.map((i) => i.pid)).toEqual([first.pid]);
    await sleep(1500);
    expect(pool.instances).toHaveLength(0);
    // SIGTERM, then gone (SIGKILL after 10 s at the latest).
    await Promise.race([pool.history[0]?.whenExited(), sleep(11_000)]);
    expect(await alive(first.pid)).toBe(false);
    const second = (await json(`${platform.rootUrl('idle')}/whoami`)).body as { pid: number; bootedAt: number };
    expect(second.pid).not.toBe(first.pid);
    expect(second.bootedAt).toBeGreaterThan(first.bootedAt);
  });

  it('serves up to the concurrency at once per instance, up to the maximum of instances; the rest wait', async () => {
    // Warm (and frozen) first: what is tested is the routing to a running instance, not its start.
    expect((await json(`${platform.rootUrl('packed')}/whoami`)).status).toBe(200);
    const started = Date.now();
    const answers = await Promise.all([1, 2, 3].map(() => json(`${platform.rootUrl('packed')}/wait?n=800`)));
    const elapsed = Date.now() - started;
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
    // One instance, two at once: the third waited for one of the first two.
    expect(new Set(answers.map((a) => (a.body as { pid: number }).pid)).size).toBe(1);
    expect(platform.pool('packed').history).toHaveLength(1);
    expect(elapsed).toBeGreaterThanOrEqual(1600);
  });

  it('fails a request with 429 once it waited the pending time with every instance busy', async () => {
    const [held, refused] = await Promise.all([
      json(`${platform.rootUrl('narrow')}/wait?n=1500`),
      sleep(200).then(() => json(`${platform.rootUrl('narrow')}/whoami`)),
    ]);
    expect(held.status).toBe(200);
    expect(refused.status).toBe(429);
    expect(refused.body).toContain('no available instance');
  });

  it('answers 504 when the function does not answer within the request timeout', async () => {
    const started = Date.now();
    const answer = await json(`${platform.rootUrl('slow')}/wait?n=5000`);
    expect(answer.status).toBe(504);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('refuses requests over 32 MB, with or without a Content-Length', async () => {
    const url = `${platform.rootUrl('probe')}/count`;
    const post = (body: RequestInit['body'], extra: RequestInit = {}) =>
      json(url, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body, ...extra });
    expect(await post(Buffer.alloc(31 * MB))).toMatchObject({ status: 200, body: { received: 31 * MB } });
    expect((await post(Buffer.alloc(33 * MB))).status).toBe(413);
    const streamed = Readable.toWeb(
      Readable.from(
        (function* () {
          for (let i = 0; i < 33; i++) yield Buffer.alloc(MB);
        })(),
      ),
    ) as ReadableStream;
    expect((await post(streamed, { duplex: 'half' } as RequestInit)).status).toBe(413);
  });

  it('cuts responses over 32 MB, and streamed ones (no Content-Length) over 10 MB', async () => {
    const size = async (query: string) => {
      const response = await fetch(`${platform.rootUrl('probe')}/bytes?${query}`);
      if (response.status !== 200) return response.status;
      return (await response.arrayBuffer()).byteLength;
    };
    expect(await size(`n=${20 * MB}`)).toBe(20 * MB);
    expect(await size(`n=${33 * MB}`)).toBe(500);
    expect(await size(`n=${9 * MB}&stream=1`)).toBe(9 * MB);
    await expect(size(`n=${11 * MB}&stream=1`)).rejects.toThrow();
  });
});

describe('the fake Cloud Run Admin API, as Google documents Cloud Run Jobs', () => {
  let cloudRun: FakeCloudRun;
  const JOB = 'projects/p/locations/l/jobs/sandbox';
  // Executions that end at once with exit code 0: what is tested here is the API, not a sandbox.
  const quickLauncher: SandboxLauncher = {
    name: 'quick',
    sandboxesOutliveProcess: true,
    status: async () => undefined,
    launch: async (spec) => ({
      ref: spec.turnId,
      ended: sleep(50).then(() => ({ kind: 'exited', exitCode: 0, signal: null, outOfMemory: false })),
      cancel: async () => {},
    }),
    reattach: () => undefined,
    close: async () => {},
  };
  beforeAll(async () => {
    cloudRun = await startFakeCloudRun({ sandboxFor: async () => quickLauncher, startDelayMs: 400, runsPerMinute: 3, retainedExecutions: 2 });
  });
  afterAll(async () => cloudRun?.close());

  const base = () => `http://${cloudRun.host}:${cloudRun.port}/v2`;
  const runJob = async () => {
    const response = await fetch(`${base()}/${JOB}:run`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        overrides: {
          containerOverrides: [
            {
              env: [
                { name: RUNNER_ENV.turnId, value: 't' },
                { name: RUNNER_ENV.apiUrl, value: 'http://127.0.0.1:1' },
              ],
            },
          ],
        },
      }),
    });
    return { status: response.status, body: (await response.json()) as { metadata?: { name: string }; error?: { status: string } } };
  };
  const getExecution = async (name: string) => {
    const response = await fetch(`${base()}/${name}`);
    return { status: response.status, body: (await response.json()) as { startTime?: string; completionTime?: string; error?: { status: string } } };
  };

  it('starts an execution only after a delay, deletes the oldest completed past the retention count, and refuses runJob past the per-minute quota with 429', async () => {
    const first = await runJob();
    expect(first.status).toBe(200);
    const name = first.body.metadata?.name ?? '';
    expect((await getExecution(name)).body.startTime).toBeUndefined();
    await sleep(700);
    expect((await getExecution(name)).body).toMatchObject({ startTime: expect.any(String), completionTime: expect.any(String) });

    const second = await runJob();
    const third = await runJob();
    expect([second.status, third.status]).toEqual([200, 200]);
    const refused = await runJob();
    expect(refused.status).toBe(429);
    expect(refused.body.error?.status).toBe('RESOURCE_EXHAUSTED');

    await sleep(700);
    // Three completed, two kept: the first is gone.
    expect(await getExecution(name)).toMatchObject({ status: 404, body: { error: { status: 'NOT_FOUND' } } });
    expect((await getExecution(third.body.metadata?.name ?? '')).status).toBe(200);
    expect(cloudRun.deleted.has(name)).toBe(true);
  });
});

describe('the fake Cloud Scheduler', () => {
  it('POSTs to its target every period with a Google ID token for the audience, which the published keys verify', async () => {
    const tokens = await startGoogleIdTokens();
    const seen: Array<{ method: string; url: string; authorization: string }> = [];
    const target = http.createServer((req, res) => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', authorization: req.headers.authorization ?? '' });
      res.writeHead(204).end();
    });
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(target.address() as AddressInfo).port}/ops/sweep`;
    const scheduler = startScheduler(tokens, { url, audience: url, account: 'sweeper@p.iam.gserviceaccount.com', everySeconds: 0.3 }, () => {});
    try {
      await sleep(1000);
      expect(scheduler.attempts.length).toBeGreaterThanOrEqual(2);
      expect(scheduler.attempts.every((s) => s === 204)).toBe(true);
      expect(seen[0]).toMatchObject({ method: 'POST', url: '/ops/sweep' });
      const token = seen[0]?.authorization.replace(/^Bearer /, '') ?? '';
      const { payload, protectedHeader } = await jwtVerify(token, createRemoteJWKSet(new URL(tokens.jwksUrl)), {
        issuer: 'https://accounts.google.com',
        audience: url,
      });
      expect(protectedHeader.alg).toBe('RS256');
      expect(payload).toMatchObject({ email: 'sweeper@p.iam.gserviceaccount.com', email_verified: true });
      expect((payload.exp ?? 0) - (payload.iat ?? 0)).toBe(3600);
      await expect(jwtVerify(token, createRemoteJWKSet(new URL(tokens.jwksUrl)), { audience: 'https://elsewhere.example' })).rejects.toThrow();
    } finally {
      scheduler.close();
      target.closeAllConnections();
      await new Promise<void>((resolve) => target.close(() => resolve()));
      await tokens.close();
    }
  });
});
