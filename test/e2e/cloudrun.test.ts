import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeAnthropic, type FakeAnthropic } from '../fixtures/fake-anthropic.js';
import type { FakeCloudRun } from '../fixtures/fake-cloud-run.js';
import { startSandboxedCloudRun } from '../sim/cloud-fakes.js';
import { CLAUDERUN_SOURCE, startPlatform, type Platform } from '../sim/platform/index.js';
import { call, linkPath, prompt, TEST_QUOTA_ENV } from '../support/service.js';
import { readEvents } from '../support/sse.js';
import { RUNNER_ENV } from '../../functions/src/contract/runner-env.js';

const JOB = 'projects/clauderun-test/locations/europe-west1/jobs/sandbox';
const TIMEOUT_SECONDS = 6;

/**
 * The production launcher, on the official @google-cloud/run clients, against the fake Admin API,
 * in the API as the platform runs it: a Functions Framework instance of its own behind the
 * simulated front end (test/sim/platform), frozen whenever no request is in flight. One instance:
 * its store is SQLite in the instance's own directory.
 */
describe('turns as Cloud Run Job executions', () => {
  let fake: FakeAnthropic;
  let cloudRun: FakeCloudRun;
  let platform: Platform;
  let service: { url: string };
  let sandboxDir: string;

  beforeAll(async () => {
    fake = await startFakeAnthropic();
    sandboxDir = await mkdtemp(path.join(tmpdir(), 'clauderun-fake-run-'));
    cloudRun = await startSandboxedCloudRun({ dataDir: sandboxDir, log: () => {}, cloudRun: { startDelayMs: 200 } });
    platform = await startPlatform({ names: ['clauderun'], dataDir: path.join(sandboxDir, 'platform'), log: () => {} });
    // The run.app-style URL: the runner keeps no path of API_URL yet (see sim.test.ts).
    service = { url: platform.rootUrl('clauderun') };
    platform.deploy({
      name: 'clauderun',
      source: CLAUDERUN_SOURCE,
      maxInstances: 1,
      concurrency: 80,
      timeoutSeconds: TIMEOUT_SECONDS + 60,
      env: {
        ...TEST_QUOTA_ENV,
        ANTHROPIC_API_KEY: fake.apiKey,
        ANTHROPIC_BASE_URL: fake.url,
        CLAUDERUN_SANDBOX: 'cloudrun',
        CLAUDERUN_CLOUDRUN_JOB: JOB,
        CLAUDERUN_CLOUDRUN_ENDPOINT: `http://${cloudRun.host}:${cloudRun.port}`,
        CLAUDERUN_API_URL: service.url,
        CLAUDERUN_TURN_TIMEOUT_SECONDS: String(TIMEOUT_SECONDS),
        // K_SERVICE is set on the platform: header auth, the tests' way of naming users, must be allowed.
        CLAUDERUN_TEST_SETTINGS_IN_CLOUD: 'true',
      },
    });
  });
  afterAll(async () => {
    await platform?.close();
    await cloudRun?.close();
    await fake?.close();
    await rm(sandboxDir, { recursive: true, force: true });
  });

  it('runs a turn as one execution whose overrides carry the turn id, API URL, token and timeout', async () => {
    const before = cloudRun.calls.runJob ?? 0;
    const answer = await prompt(service, 'cloud-alice', { message: 'hello from the cloud' });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    expect(answer.body).toMatchObject({ status: 'succeeded', text: 'echo: hello from the cloud' });
    expect(cloudRun.calls.runJob).toBe(before + 1);
    const execution = [...cloudRun.executions.values()].find((e) => e.env[RUNNER_ENV.turnId] === answer.body.turnId);
    expect(execution?.name).toMatch(new RegExp(`^${JOB}/executions/sandbox-`));
    expect(execution?.env).toMatchObject({ API_URL: service.url, TURN_TOKEN: expect.stringMatching(/^crt1\./) });
    expect(Object.keys(execution?.env ?? {}).sort()).toEqual(['API_URL', 'TURN_ID', 'TURN_TOKEN']);
    expect(execution?.timeoutSeconds).toBe(TIMEOUT_SECONDS);
  });

  it('retries runJob refused with 429 and 503, then succeeds', async () => {
    const before = cloudRun.calls.runJob ?? 0;
    cloudRun.refuseNextRuns(1, 429);
    cloudRun.refuseNextRuns(1, 503);
    const answer = await prompt(service, 'cloud-bob', { message: 'patience' });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    expect(cloudRun.calls.runJob).toBe(before + 3);
  });

  it('answers 503 with Retry-After when Cloud Run keeps refusing, and the turn ends failed', async () => {
    cloudRun.refuseNextRuns(5, 503);
    const response = await fetch(`${service.url}/api/conversation`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-user-id': 'cloud-carol' },
      body: JSON.stringify({ message: 'no room' }),
    });
    expect(response.status).toBe(503);
    expect(response.headers.get('retry-after')).toBe('10');
    const body = (await response.json()) as { error: { code: string; message: string; details: { status: string } } };
    expect(body.error).toMatchObject({ code: 'unavailable', details: { status: 'failed' } });
    expect(body.error.message).toMatch(/Cloud Run refused to start a sandbox 5 times/);
  });

  it("fails a turn whose execution failed without a result, with the execution's own reason", async () => {
    cloudRun.failNextExecution('Image pull failed: manifest unknown');
    const answer = await prompt(service, 'cloud-dave', { message: 'doomed' });
    expect(answer.status).toBe(502);
    expect(answer.body).toMatchObject({ error: { code: 'sandbox_failed', message: expect.stringContaining('Image pull failed: manifest unknown') } });
  });

  it('cancels a running execution within 2 s', async () => {
    const started = await prompt(service, 'cloud-erin', { message: 'bash: node -e "setTimeout(() => {}, 60000)"' }, { prefer: 'respond-async' });
    const links = started.body.links as { events: string; cancel: string };
    await readEvents(`${service.url}${linkPath(links.events)}`, { 'x-user-id': 'cloud-erin' }, (e) => e.event === 'tool_use');
    const before = Date.now();
    const cancelled = await call(service, 'POST', linkPath(links.cancel), { userId: 'cloud-erin' });
    expect(cancelled.body).toMatchObject({ status: 'cancelled' });
    expect(Date.now() - before).toBeLessThan(2000);
    expect(cloudRun.calls.cancelExecution).toBeGreaterThanOrEqual(1);
  });

  it('ends a turn whose execution outlives its timeout as timed_out', async () => {
    const answer = await prompt(service, 'cloud-frank', { message: 'bash: node -e "setTimeout(() => {}, 60000)"' });
    expect(answer.status).toBe(504);
    expect(answer.body).toMatchObject({ error: { code: 'timed_out' } });
  });
});
