import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SandboxHandle, SandboxSpec } from '../../functions/src/sandbox/launcher.js';
import { startKeyIssuer, type KeyIssuer } from '../fixtures/key-issuer.js';
import { ManualLauncher } from '../support/manual-launcher.js';
import { call, prompt, startService, type RunningService } from '../support/service.js';

/**
 * Turns whose sandbox ended while no instance could notice: with request-based billing an
 * instance has no CPU between requests (cloud.google.com/run/docs/tips/general), so its watch
 * of an execution stands still. The turn is settled by whoever reads it, and by the sweeper.
 */

const KILLED = { kind: 'exited', exitCode: 137, signal: null, outOfMemory: false, detail: 'the container was killed' } as const;

const startAsync = async (service: RunningService, userId: string, message: string) => {
  const started = await prompt(service, userId, { message }, { prefer: 'respond-async' });
  expect(started.status, JSON.stringify(started.body)).toBe(202);
  return { conversationId: started.body.conversationId as string, turnId: started.body.turnId as string };
};
const turnPath = (t: { conversationId: string; turnId: string }) => `/api/conversations/${t.conversationId}/turns/${t.turnId}`;

describe('turns whose sandbox ended unseen', () => {
  // Sandboxes that outlive the process, as Cloud Run executions do.
  const launcher = new ManualLauncher(true);
  let service: RunningService;
  beforeAll(async () => {
    service = await startService({ CLAUDERUN_MAX_RUNNING_TURNS_PER_USER: '1' }, undefined, { launcher });
  });
  afterAll(() => service?.stop({ removeData: true }));

  it("are settled with the sandbox's own reason when the turn is read", async () => {
    const turn = await startAsync(service, 'reader', 'vanishing');
    launcher.last().vanish(KILLED);
    const read = await call(service, 'GET', turnPath(turn), { userId: 'reader' });
    expect(read.body).toMatchObject({
      status: 'failed',
      reason: expect.stringContaining('exited with code 137 without reporting a result (the container was killed)'),
    });
    const conversation = await call(service, 'GET', `/api/conversations/${turn.conversationId}`, { userId: 'reader' });
    expect((conversation.body.turns as Array<{ status: string }>).map((t) => t.status)).toEqual(['failed']);
  });

  it("no longer hold the user's running limit: the next prompt is admitted", async () => {
    const first = await startAsync(service, 'admitted', 'first');
    launcher.last().vanish(KILLED);
    const second = await prompt(service, 'admitted', { message: 'second' }, { prefer: 'respond-async' });
    expect(second.status, JSON.stringify(second.body)).toBe(202);
    expect((await call(service, 'GET', turnPath(first), { userId: 'admitted' })).body).toMatchObject({ status: 'failed' });
    const usage = await call(service, 'GET', '/api/usage', { userId: 'admitted' });
    expect(usage.body).toMatchObject({ runningTurns: 1 });
    launcher.last().end({ kind: 'cancelled' });
  });

  it('leave a running sandbox alone', async () => {
    const turn = await startAsync(service, 'patient', 'still going');
    expect((await call(service, 'GET', turnPath(turn), { userId: 'patient' })).body).toMatchObject({ status: 'starting' });
    launcher.last().end({ kind: 'cancelled' });
  });
});

describe("a turn made final before its execution is gone (the cloud's order)", () => {
  // Executions outlive the process and take their time to stop once cancelled.
  const launcher = new ManualLauncher(true, true);
  let service: RunningService;
  beforeAll(async () => {
    service = await startService({ CLAUDERUN_MAX_RUNNING_TURNS_PER_USER: '1' }, undefined, { launcher });
  });
  afterAll(() => service?.stop({ removeData: true }));

  it("holds the user's running slot until its sandbox is gone, though its answer is out", async () => {
    const turn = await startAsync(service, 'early', 'posting early');
    const sandbox = launcher.last();
    const asRunner = { authorization: `Bearer ${sandbox.spec.token}`, 'content-type': 'application/json' };
    await fetch(`${service.internalUrl}/internal/turns/${sandbox.spec.turnId}`, { headers: asRunner });
    const result = { outcome: 'succeeded', text: 'posted early', sessionId: '00000000-0000-4000-8000-000000000003', stateSaved: false };
    const posted = fetch(`${service.internalUrl}/internal/turns/${sandbox.spec.turnId}/result`, {
      method: 'POST',
      headers: asRunner,
      body: JSON.stringify(result),
    });
    await expect.poll(async () => (await call(service, 'GET', turnPath(turn), { userId: 'early' })).body.status).toBe('succeeded');
    // The answer is out, the sandbox still stopping: it still counts.
    expect((await call(service, 'GET', '/api/usage', { userId: 'early' })).body).toMatchObject({ runningTurns: 1 });
    const refused = await prompt(service, 'early', { message: 'too soon' }, { prefer: 'respond-async' });
    expect(refused.status).toBe(429);
    expect(refused.body).toMatchObject({ error: { details: { limit: 'running_turns' } } });
    sandbox.end({ kind: 'cancelled' });
    expect((await posted).status).toBe(200);
    expect((await call(service, 'GET', '/api/usage', { userId: 'early' })).body).toMatchObject({ runningTurns: 0 });
    expect((await prompt(service, 'early', { message: 'now' }, { prefer: 'respond-async' })).status).toBe(202);
    launcher.last().end({ kind: 'cancelled' });
  });
});

/** A launcher whose launches wait until the test lets them go: a runJob under way on some instance. */
class HeldLauncher extends ManualLauncher {
  private release: () => void = () => {};
  private readonly held = new Promise<void>((resolve) => (this.release = resolve));

  override async launch(spec: SandboxSpec): Promise<SandboxHandle> {
    await this.held;
    return super.launch(spec);
  }

  letGo(): void {
    this.release();
  }
}

describe('an instance starting while another launches a sandbox', () => {
  it('leaves the turn being launched alone: a cold start settles nothing it cannot know is over', async () => {
    const launching = new HeldLauncher(true);
    const first = await startService({}, undefined, { launcher: launching });
    const submitted = prompt(first, 'scaled', { message: 'launching elsewhere' }, { prefer: 'respond-async' });
    await expect
      .poll(async () => ((await call(first, 'GET', '/api/conversations', { userId: 'scaled' })).body.conversations as unknown[]).length)
      .toBe(1);
    // A second instance on the same store starts (a scale-out) while the launch is under way.
    const second = await startService({}, first.dataDir, { launcher: new ManualLauncher(true) });
    try {
      const list = await call(second, 'GET', '/api/conversations', { userId: 'scaled' });
      const [conversation] = list.body.conversations as Array<{ conversationId: string }>;
      const read = await call(second, 'GET', `/api/conversations/${conversation?.conversationId}`, { userId: 'scaled' });
      expect((read.body.turns as Array<{ status: string }>).map((t) => t.status)).toEqual(['queued']);
      launching.letGo();
      const started = await submitted;
      expect(started.status, JSON.stringify(started.body)).toBe(202);
      expect(started.body).toMatchObject({ status: 'starting' });
      launching.last().end({ kind: 'cancelled' });
    } finally {
      await second.stop();
      await first.stop({ removeData: true });
    }
  });
});

describe('the sweeper', () => {
  const ACCOUNT = 'sweeper@clauderun-test.iam.gserviceaccount.com';
  const AUDIENCE = 'https://clauderun-test.example/ops/sweep';
  const launcher = new ManualLauncher(true);
  let keys: KeyIssuer;
  let service: RunningService;
  beforeAll(async () => {
    keys = await startKeyIssuer();
    service = await startService(
      { CLAUDERUN_SWEEPER_ACCOUNT: ACCOUNT, CLAUDERUN_SWEEPER_AUDIENCE: AUDIENCE, CLAUDERUN_GOOGLE_JWKS_URL: keys.jwksUrl },
      undefined,
      { launcher },
    );
  });
  afterAll(async () => {
    await service?.stop({ removeData: true });
    await keys?.close();
  });

  const schedulerClaims = { iss: 'https://accounts.google.com', aud: AUDIENCE, email: ACCOUNT, email_verified: true, sub: '1234567890' };
  const sweep = (token?: string) =>
    fetch(`${service.url}/ops/sweep`, { method: 'POST', headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });

  it("settles a turn no one reads, called with the scheduler's ID token", async () => {
    const turn = await startAsync(service, 'unwatched', 'no one is looking');
    launcher.last().vanish(KILLED);
    const answer = await sweep(await keys.sign(schedulerClaims));
    expect(answer.status).toBe(200);
    expect(await answer.json()).toMatchObject({ checked: 1, settled: 1 });
    expect((await call(service, 'GET', turnPath(turn), { userId: 'unwatched' })).body).toMatchObject({ status: 'failed' });
  });

  it.each([
    ['no token', () => Promise.resolve(undefined), /missing bearer token/],
    ['a token for another audience', () => keys.sign({ ...schedulerClaims, aud: 'https://elsewhere.example/' }), /"aud" claim/],
    ["another account's token", () => keys.sign({ ...schedulerClaims, email: 'someone@example.com' }), /not the sweeper account/],
    ['an unverified email', () => keys.sign({ ...schedulerClaims, email_verified: false }), /not the sweeper account/],
    ['another issuer', () => keys.sign({ ...schedulerClaims, iss: 'https://securetoken.google.com/x' }), /"iss" claim/],
    ['an expired token', () => keys.sign({ ...schedulerClaims, iat: 1_000_000, exp: 1_000_600 }), /expired/],
    ['a token signed with another key', () => keys.sign(schedulerClaims, { withKey: keys.strangerKey }), /not valid/],
    [
      'a token issued in the future',
      () => keys.sign({ ...schedulerClaims, iat: Math.floor(Date.now() / 1000) + 3600, exp: Math.floor(Date.now() / 1000) + 7200 }),
      /iat/,
    ],
    ['a token that lives ten years', () => keys.sign({ ...schedulerClaims, exp: Math.floor(Date.now() / 1000) + 10 * 365 * 24 * 3600 }), /exp/],
  ])('refuses %s with a JSON 401', async (_what, token, message) => {
    const answer = await sweep(await token());
    expect(answer.status).toBe(401);
    expect(((await answer.json()) as { error: { code: string; message: string } }).error).toMatchObject({
      code: 'unauthenticated',
      message: expect.stringMatching(message),
    });
  });

  it('is not there when no sweeper account is configured', async () => {
    const plain = await startService({}, undefined, { launcher: new ManualLauncher(true) });
    try {
      expect((await fetch(`${plain.url}/ops/sweep`, { method: 'POST' })).status).toBe(404);
    } finally {
      await plain.stop({ removeData: true });
    }
  });
});
