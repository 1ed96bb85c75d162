import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeAnthropic, type FakeAnthropic } from '../fixtures/fake-anthropic.js';
import { startCloudFakes, type CloudFakes } from '../sim/cloud-fakes.js';
import { firestoreEmulatorUnavailable } from '../support/firestore-emulator.js';
import { call, freePort, linkPath, prompt, startService, type RunningService } from '../support/service.js';
import { startServiceProcess } from '../support/service-process.js';
import { readEvents } from '../support/sse.js';

const unavailable = firestoreEmulatorUnavailable();
if (unavailable !== undefined) console.warn(`Firestore emulator not found: the production-path tests are SKIPPED (${unavailable})`);
const describeWithEmulator = unavailable === undefined ? describe : describe.skip;

describeWithEmulator('the production path on one machine (Firestore emulator, fake Cloud Run and Cloud Storage)', () => {
  let fake: FakeAnthropic;
  let dataDir: string;
  beforeAll(async () => {
    fake = await startFakeAnthropic();
    dataDir = await mkdtemp(path.join(tmpdir(), 'clauderun-sim-test-'));
  });
  afterAll(async () => {
    await fake?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('`npm run sim` serves the seed\'s calls as `npm start` does, and stops cleanly', async () => {
    const sim = await startServiceProcess(
      {
        CLAUDERUN_DATA_DIR: path.join(dataDir, 'sim'),
        ANTHROPIC_API_KEY: fake.apiKey,
        ANTHROPIC_BASE_URL: fake.url,
        CLAUDERUN_MAX_TURNS_PER_MINUTE: '2',
      },
      'sim',
    );
    let exitCode: number | null;
    try {
      const first = await prompt(sim, 'sim-user', { message: 'write: /workspace/sim.txt from the cloud path' });
      expect(first.status, `${JSON.stringify(first.body)}\n${sim.output()}`).toBe(200);
      const second = await prompt(sim, 'sim-user', { message: 'bash: cat /workspace/sim.txt', conversationId: first.body.conversationId });
      expect(second.status, `${JSON.stringify(second.body)}\n${sim.output()}`).toBe(200);
      expect(second.body.text).toContain('from the cloud path');
      const list = await call(sim, 'GET', '/api/conversations', { userId: 'sim-user' });
      expect(list.body.conversations).toHaveLength(1);
      expect((await prompt(sim, 'sim-user', '{broken')).status).toBe(400);
      // Limits and usage live in Firestore on this path.
      const usage = await call(sim, 'GET', '/api/usage', { userId: 'sim-user' });
      expect(usage.body).toMatchObject({ turns: 2, runningTurns: 0, limits: { turnsPerMinute: 2 } });
      expect(usage.body.tokens as number).toBeGreaterThan(0);
      const third = await prompt(sim, 'sim-user', { message: 'one too many' });
      expect(third.status).toBe(429);
      expect((third.body.error as { details: unknown }).details).toMatchObject({ limit: 'turns_per_minute', max: 2 });
    } finally {
      exitCode = await sim.stop();
    }
    expect(exitCode, sim.output()).toBe(0);
  });

  describe('two API instances sharing one Firestore', () => {
    let fakes: CloudFakes;
    let front: RunningService;
    let back: RunningService;
    beforeAll(async () => {
      fakes = await startCloudFakes({ dataDir: path.join(dataDir, 'two'), log: () => {} });
      const secret = randomBytes(32).toString('hex');
      const backPort = await freePort();
      const frontPort = await freePort();
      // Sandboxes call back the other instance; only that one holds a working model key, so a
      // turn can succeed only if its runner and model calls were served there.
      back = await startService({ ...fakes.apiEnv(backPort), CLAUDERUN_TOKEN_SECRET: secret, ANTHROPIC_API_KEY: fake.apiKey, ANTHROPIC_BASE_URL: fake.url }, path.join(dataDir, 'back'));
      front = await startService(
        { ...fakes.apiEnv(frontPort, back.url), CLAUDERUN_TOKEN_SECRET: secret, ANTHROPIC_API_KEY: 'sk-ant-wrong-key', ANTHROPIC_BASE_URL: fake.url },
        path.join(dataDir, 'front'),
      );
    });
    afterAll(async () => {
      await front?.stop();
      await back?.stop();
      await fakes?.close();
    });

    it('a turn started through one is answered through the other, and watched live through the first', async () => {
      const started = await prompt(front, 'two-user', { message: 'bash: echo across-instances' }, { prefer: 'respond-async' });
      expect(started.status).toBe(202);
      const links = started.body.links as { events: string; turn: string };
      const streamed = await readEvents(`${front.url}${linkPath(links.events)}`, { 'x-user-id': 'two-user' });
      expect(streamed.events.map((e) => e.event)).toEqual(expect.arrayContaining(['tool_use', 'tool_result', 'result']));
      expect(streamed.events.at(-1)?.data).toMatchObject({ data: { status: 'succeeded' } });

      const held = await prompt(front, 'two-user', { message: 'held across instances', conversationId: started.body.conversationId });
      expect(held.status, JSON.stringify(held.body)).toBe(200);
      expect(held.body).toMatchObject({ status: 'succeeded', text: 'echo: held across instances' });
      expect(fake.calls.some((c) => c.apiKey === 'sk-ant-wrong-key')).toBe(false);
    });
  });
});
