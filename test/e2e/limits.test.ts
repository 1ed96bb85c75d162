import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FakeAnthropic } from '../fixtures/fake-anthropic.js';
import { ManualLauncher } from '../support/manual-launcher.js';
import { call, linkPath, startService, useServiceWithFake, type RunningService } from '../support/service.js';

/** Starts a turn in a new conversation without waiting for it; the answer keeps its headers. */
async function startTurn(service: RunningService, userId: string, message = 'hello') {
  const response = await fetch(`${service.url}/api/conversation`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-user-id': userId, prefer: 'respond-async' },
    body: JSON.stringify({ message }),
  });
  return { status: response.status, retryAfter: response.headers.get('retry-after'), body: (await response.json()) as Record<string, unknown> };
}

const errorOf = (body: Record<string, unknown>) => body.error as { code: string; message: string; details: Record<string, unknown> };

describe('fair use: limits on turns per user and on sandboxes overall', () => {
  // Sandboxes that never end on their own: a started turn stays running until the test ends it.
  const launcher = new ManualLauncher();
  let service: RunningService;

  beforeAll(async () => {
    service = await startService(
      { CLAUDERUN_MAX_RUNNING_TURNS_PER_USER: '2', CLAUDERUN_MAX_TURNS_PER_MINUTE: '4', CLAUDERUN_MAX_RUNNING_SANDBOXES: '3' },
      undefined,
      { launcher },
    );
  });
  afterAll(() => service.stop({ removeData: true }));

  it('of 20 simultaneous prompts from one user, only the running limit start; the rest get 429 naming it', async () => {
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => startTurn(service, 'alice', `prompt ${i}`)));
    expect(answers.filter((a) => a.status === 202)).toHaveLength(2);
    const refused = answers.filter((a) => a.status !== 202);
    expect(refused).toHaveLength(18);
    for (const answer of refused) {
      expect(answer.status).toBe(429);
      expect(answer.retryAfter).toBe('5');
      expect(errorOf(answer.body)).toMatchObject({
        code: 'rate_limited',
        message: expect.stringMatching(/running_turns.*2 turn\(s\) already running/),
        details: { limit: 'running_turns', max: 2, retryAfterSeconds: 5 },
      });
    }
    // A refused prompt leaves no conversation behind.
    const list = await call(service, 'GET', '/api/conversations', { userId: 'alice' });
    expect((list.body.conversations as unknown[]).length).toBe(2);
    const usage = await call(service, 'GET', '/api/usage', { userId: 'alice' });
    expect(usage.status).toBe(200);
    expect(usage.body).toMatchObject({
      turns: 2,
      runningTurns: 2,
      limits: { runningTurns: 2, turnsPerMinute: 4, dailyTokens: null, dailyCostUsd: 10 },
    });
  });

  it('caps the sandboxes running across all users', async () => {
    expect((await startTurn(service, 'bob')).status).toBe(202);
    const carol = await startTurn(service, 'carol');
    expect(carol.status).toBe(429);
    expect(errorOf(carol.body).details).toMatchObject({ limit: 'running_sandboxes', max: 3 });
  });

  it('a finished turn frees its slot at once; the minute limit still counts it', async () => {
    for (const sandbox of launcher.sandboxes) sandbox.end({ kind: 'exited', exitCode: 1, signal: null, outOfMemory: false });
    await expect.poll(async () => (await call(service, 'GET', '/api/usage', { userId: 'alice' })).body.runningTurns).toBe(0);
    expect((await startTurn(service, 'alice')).status).toBe(202);
    expect((await startTurn(service, 'alice')).status).toBe(202);
    for (const sandbox of launcher.sandboxes) sandbox.end({ kind: 'exited', exitCode: 0, signal: null, outOfMemory: false });
    await expect.poll(async () => (await call(service, 'GET', '/api/usage', { userId: 'alice' })).body.runningTurns).toBe(0);
    const fifth = await startTurn(service, 'alice');
    expect(fifth.status).toBe(429);
    expect(errorOf(fifth.body).details).toMatchObject({ limit: 'turns_per_minute', max: 4 });
    expect(Number(fifth.retryAfter)).toBeGreaterThan(0);
    expect(Number(fifth.retryAfter)).toBeLessThanOrEqual(60);
  });

  it('counts empty conversations in the minute limit: a creation loop gets 429 and leaves nothing behind', async () => {
    const answers = [];
    for (let i = 0; i < 6; i++) answers.push(await call(service, 'POST', '/api/conversations', { userId: 'dave', body: {} }));
    expect(answers.map((a) => a.status)).toEqual([201, 201, 201, 201, 429, 429]);
    expect(errorOf(answers[4]!.body)).toMatchObject({ code: 'rate_limited', details: { limit: 'turns_per_minute', max: 4 } });
    expect((await call(service, 'GET', '/api/conversations', { userId: 'dave' })).body.conversations).toHaveLength(4);
    expect((await startTurn(service, 'dave')).status).toBe(429);
  });

  it('GET /api/usage needs a user like every other call', async () => {
    const answer = await call(service, 'GET', '/api/usage');
    expect(answer.status).toBe(401);
    expect(errorOf(answer.body).code).toBe('unauthenticated');
  });
});

describe('the daily budget is metered at the model proxy and stops a turn that goes over', () => {
  // The agent's first model call alone is thousands of tokens (its system prompt and tools).
  const running = useServiceWithFake({ CLAUDERUN_DAILY_TOKEN_LIMIT: '1000' });
  let fake: FakeAnthropic;
  beforeAll(() => {
    fake = running.fake;
  });

  it('cuts the turn off after the call that used the budget up, before the tool runs', async () => {
    const started = await startTurn(running.service, 'dora', 'bash: echo tool-ran > /workspace/ran.txt');
    expect(started.status).toBe(202);
    const turnPath = linkPath((started.body.links as { turn: string }).turn);
    await expect
      .poll(async () => (await call(running.service, 'GET', turnPath, { userId: 'dora' })).body.status, { timeout: 60_000, interval: 250 })
      .toBe('failed');
    const turn = (await call(running.service, 'GET', turnPath, { userId: 'dora' })).body;
    expect(turn.reason).toMatch(/^stopped: the daily budget of 1000 tokens is used up \(\d+ used today, UTC\)$/);
    expect(turn.stoppedBy).toBe('daily_tokens');
    expect((turn.usage as { modelCalls: number }).modelCalls).toBeGreaterThan(0);
    // The call that would carry the tool's result never reached the model.
    const sawToolResult = fake.calls.some((c) => JSON.stringify(c.body.messages).includes('tool_result'));
    expect(sawToolResult).toBe(false);

    const usage = (await call(running.service, 'GET', '/api/usage', { userId: 'dora' })).body;
    expect(usage.tokens as number).toBeGreaterThanOrEqual(1000);
    const next = await startTurn(running.service, 'dora');
    expect(next.status).toBe(429);
    expect(errorOf(next.body).details).toMatchObject({ limit: 'daily_tokens', max: 1000 });
    expect(Number(next.retryAfter)).toBeGreaterThan(0);
    expect(Number(next.retryAfter)).toBeLessThanOrEqual(24 * 3600);
    // Budgets are per user.
    expect((await call(running.service, 'GET', '/api/usage', { userId: 'erin' })).body).toMatchObject({ tokens: 0, turns: 0 });
  });

  it('a client waiting for the answer gets 429 naming the budget, with the stopped turn', async () => {
    const response = await fetch(`${running.service.url}/api/conversation`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-user-id': 'fay' },
      body: JSON.stringify({ message: 'bash: echo never' }),
    });
    expect(response.status).toBe(429);
    expect(Number(response.headers.get('retry-after'))).toBeGreaterThan(0);
    const body = (await response.json()) as Record<string, unknown>;
    expect(errorOf(body)).toMatchObject({
      code: 'rate_limited',
      message: expect.stringMatching(/^stopped: the daily budget of 1000 tokens is used up/),
      details: { limit: 'daily_tokens', status: 'failed', stoppedBy: 'daily_tokens' },
    });
  });
});
