import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeAnthropic, type FakeAnthropic } from '../fixtures/fake-anthropic.js';
import { runRunnerOnHost } from '../support/host-runner.js';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SandboxHandle, SandboxSpec } from '../../functions/src/sandbox/launcher.js';
import { ManualLauncher } from '../support/manual-launcher.js';
import { faultPlan, routeOf, startPathFront, type PathFront } from '../support/path-front.js';
import { readEvents } from '../support/sse.js';
import { call, linkPath, prompt, startService, type RunningService } from '../support/service.js';

/**
 * A launcher whose sandbox comes up before the launch call returns, as a Cloud Run execution
 * may before the API has recorded its start: the runner meets its turn still `queued`.
 */
class EagerLauncher extends ManualLauncher {
  /** Called with each sandbox's spec as soon as it is launched, before the launch returns. */
  onLaunch: ((spec: SandboxSpec) => void) | undefined;
  returnAfterMs = 0;

  override async launch(spec: SandboxSpec): Promise<SandboxHandle> {
    this.onLaunch?.(spec);
    await sleep(this.returnAfterMs);
    return super.launch(spec);
  }
}

/**
 * The real runner and the real CLI, between them and the API a front end that serves the API
 * under a path (as Google's does for a function) and fails as networks do. The runner runs as a
 * plain process: what is tested is what it says to the API, not the sandbox around it.
 */
describe('the runner behind a front end, under a path, on a failing network', () => {
  const launcher = new EagerLauncher();
  let fake: FakeAnthropic;
  let service: RunningService;
  let front: PathFront;
  beforeAll(async () => {
    fake = await startFakeAnthropic();
    service = await startService({ ANTHROPIC_API_KEY: fake.apiKey, ANTHROPIC_BASE_URL: fake.url }, undefined, { launcher });
    front = await startPathFront(service.internalUrl, '/clauderun');
  });
  afterAll(async () => {
    await front?.close();
    await service?.stop({ removeData: true });
    await fake?.close();
  });

  async function startTurn(userId: string, message: string, conversationId?: string) {
    const started = await prompt(service, userId, { message, ...(conversationId ? { conversationId } : {}) }, { prefer: 'respond-async' });
    expect(started.status, JSON.stringify(started.body)).toBe(202);
    const { spec } = launcher.last();
    const links = started.body.links as { turn: string; events: string };
    return { userId, spec, conversationId: String(started.body.conversationId), turn: linkPath(links.turn), events: linkPath(links.events) };
  }
  type Started = Awaited<ReturnType<typeof startTurn>>;
  const runner = (t: Started, place?: string) =>
    runRunnerOnHost({ apiUrl: front.url, turnId: t.spec.turnId, token: t.spec.token, timeoutMs: 30_000 }, place);
  const turnOf = async (t: Started) => (await call(service, 'GET', t.turn, { userId: t.userId })).body;
  const replay = async (t: Started) => (await readEvents(`${service.url}${t.events}`, { 'x-user-id': t.userId })).events;
  const callsOf = (t: Started) => front.handled.filter((r) => r.path.startsWith(`/internal/turns/${t.spec.turnId}`));

  it("calls the API under API_URL's path, model calls included, and nothing outside it", async () => {
    front.fault = () => 'pass';
    const t = await startTurn('prefixed', 'hello');
    const exit = await runner(t);
    expect(exit, exit.stderr).toMatchObject({ code: 0 });
    expect(await turnOf(t)).toMatchObject({ status: 'succeeded', text: 'echo: hello' });
    expect(front.outside).toEqual([]);
    const routes = front.handled.map((r) => `${r.method} ${routeOf(r.path)}`);
    expect(routes).toContain('GET /internal/turns/:id');
    expect(routes).toContain('POST /internal/model/v1/messages');
    expect(routes).toContain('POST /internal/turns/:id/result');
  });

  it('ends the turn right, and once, through refused connections, 503s and answers lost after the API acted', async () => {
    front.fault = faultPlan({
      // A 409 is what the API says while the turn is still queued (the sandbox came up first).
      'GET /internal/turns/:id': [{ status: 409 }, { status: 503, retryAfter: '1' }, 'drop-after-handled'],
      'PUT /internal/turns/:id/state': ['drop-after-handled'],
      // Progress is not idempotent: sent again after a 503 (not acted on), never after a lost answer.
      'POST /internal/turns/:id/events': [{ status: 503 }, 'drop-after-handled'],
      'POST /internal/turns/:id/result': ['drop-after-handled', { status: 502 }],
    });
    const place = await mkdtemp(path.join(tmpdir(), 'clauderun-flaky-'));
    const t = await startTurn('flaky', 'bash: echo flaky-network');
    // The sandbox starts before its network does: nothing answers for 1.5 s.
    await front.refuseFor(1500);
    const startedAt = Date.now();
    const exit = await runner(t, place);
    expect(exit, exit.stderr).toMatchObject({ code: 0 });
    expect(await turnOf(t)).toMatchObject({ status: 'succeeded', text: expect.stringContaining('flaky-network') });

    const calls = callsOf(t);
    const first = calls[0];
    expect(first?.at).toBeGreaterThanOrEqual(startedAt + 1400);
    const turnReads = calls.filter((r) => r.method === 'GET' && routeOf(r.path) === '/internal/turns/:id');
    expect(turnReads.map((r) => r.status)).toEqual([409, 503, 200, 200]);
    // Retry-After: 1 was honoured.
    expect((turnReads[2]?.at ?? 0) - (turnReads[1]?.at ?? 0)).toBeGreaterThanOrEqual(1000);
    const results = calls.filter((r) => r.path.endsWith('/result'));
    expect(results.map((r) => r.status)).toEqual([200, 502, 200]);
    expect(calls.filter((r) => r.path.endsWith('/state')).map((r) => r.status)).toEqual([204, 204]);
    const eventPosts = calls.filter((r) => r.path.endsWith('/events'));
    expect(eventPosts.slice(0, 2).map((r) => r.status)).toEqual([503, 204]);

    const events = await replay(t);
    expect(events.filter((e) => e.event === 'result')).toHaveLength(1);
    // Every progress event arrived once: the batch whose answer was lost was not sent again.
    const steps = events.filter((e) => !['status', 'result'].includes(e.event)).map((e) => `${e.event} ${JSON.stringify(e.data.data ?? e.data)}`);
    expect(steps.length).toBeGreaterThan(0);
    expect(new Set(steps).size).toBe(steps.length);

    // The state saved through a dropped answer is the conversation's: the next turn resumes it,
    // its download broken off once.
    front.fault = faultPlan({ 'GET /internal/turns/:id/state': ['drop-after-handled'] });
    const next = await startTurn('flaky', 'hello again', t.conversationId);
    const nextExit = await runner(next, place);
    await rm(place, { recursive: true, force: true });
    expect(nextExit, nextExit.stderr).toMatchObject({ code: 0 });
    expect(await turnOf(next)).toMatchObject({ status: 'succeeded', text: 'echo: hello again' });
    expect(
      callsOf(next)
        .filter((r) => r.path.endsWith('/state') && r.method === 'GET')
        .map((r) => r.status),
    ).toEqual([200, 200]);
  });

  it('stops trying a result the API refuses: a turn cancelled while its agent worked stays cancelled', async () => {
    front.fault = () => 'pass';
    // A model answer streamed over 3 s: the turn is cancelled while it comes (the model proxy
    // lets a call under way finish; any later one would be refused).
    const t = await startTurn('cancelled', 'slow: 30');
    const modelCalls = fake.requests.length;
    const running = runner(t);
    await expect.poll(() => fake.requests.length, { timeout: 10_000 }).toBeGreaterThan(modelCalls);
    expect((await call(service, 'POST', `${t.turn}/cancel`, { userId: t.userId })).status).toBe(200);
    const exit = await running;
    expect(exit, exit.stderr).toMatchObject({ code: 0 });
    expect(exit.stderr).toMatch(/the result was not taken/);
    expect(await turnOf(t)).toMatchObject({ status: 'cancelled' });
    const results = callsOf(t).filter((r) => r.path.endsWith('/result'));
    expect(results.map((r) => r.status)).toEqual([409]);
  });

  it('waits for a turn the API has not yet marked started: the sandbox came up before the launch returned', async () => {
    front.fault = () => 'pass';
    let exited: Promise<Awaited<ReturnType<typeof runRunnerOnHost>>> | undefined;
    let turnId = '';
    launcher.returnAfterMs = 1500;
    launcher.onLaunch = (spec) => {
      turnId = spec.turnId;
      exited = runRunnerOnHost({ apiUrl: front.url, turnId: spec.turnId, token: spec.token, timeoutMs: 30_000 });
    };
    try {
      const started = await prompt(service, 'eager', { message: 'hello' }, { prefer: 'respond-async' });
      expect(started.status).toBe(202);
      const exit = await exited;
      expect(exit, exit?.stderr).toMatchObject({ code: 0 });
      const turn = await call(service, 'GET', linkPath((started.body.links as { turn: string }).turn), { userId: 'eager' });
      expect(turn.body).toMatchObject({ status: 'succeeded', text: 'echo: hello' });
      const reads = front.handled.filter((r) => r.method === 'GET' && r.path === `/internal/turns/${turnId}`).map((r) => r.status);
      expect(reads[0]).toBe(409);
      expect(reads.at(-1)).toBe(200);
    } finally {
      launcher.onLaunch = undefined;
      launcher.returnAfterMs = 0;
    }
  });
});
