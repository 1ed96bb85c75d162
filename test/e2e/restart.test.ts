import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { contentText } from '../../functions/src/model/messages-request.js';
import { SqliteConversationStore } from '../../functions/src/store/sqlite.js';
import { startFakeAnthropic, type FakeAnthropic } from '../fixtures/fake-anthropic.js';
import { prompt, startService } from '../support/service.js';
import { startServiceProcess } from '../support/service-process.js';

describe('nothing is lost across restarts', () => {
  let fake: FakeAnthropic;
  let dataDir: string;
  beforeAll(async () => {
    fake = await startFakeAnthropic();
    dataDir = await mkdtemp(path.join(tmpdir(), 'clauderun-restart-'));
  });
  afterAll(async () => {
    await fake?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('a conversation goes on after the service restarts', async () => {
    const env = { ANTHROPIC_API_KEY: fake.apiKey, ANTHROPIC_BASE_URL: fake.url };
    const first = await startService(env, dataDir);
    const opened = await prompt(first, 'dana', { message: 'the password is swordfish' });
    expect(opened.status).toBe(200);
    await first.stop();

    const second = await startService(env, dataDir);
    try {
      const resumed = await prompt(second, 'dana', { message: 'bash: ls -a ~/.claude/projects', conversationId: opened.body.conversationId });
      expect(resumed.status, JSON.stringify(resumed.body)).toBe(200);
      const call = fake.calls.at(-2); // the call that asked for the tool
      expect(call?.body.messages.map((m) => contentText(m.content)).join('\n')).toContain('the password is swordfish');
    } finally {
      await second.stop();
    }
  });

  it('after kill -9 mid-turn, the interrupted turn ends with a reason and the next prompt works', async () => {
    const env = { CLAUDERUN_DATA_DIR: dataDir, ANTHROPIC_API_KEY: fake.apiKey, ANTHROPIC_BASE_URL: fake.url };
    const crashed = await startServiceProcess(env);
    const pending = await fetch(`${crashed.url}/api/conversation`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-user-id': 'erin', prefer: 'respond-async' },
      body: JSON.stringify({ message: 'bash: node -e "setTimeout(() => {}, 60000)"' }),
    });
    expect(pending.status).toBe(202);
    const { turnId, conversationId } = (await pending.json()) as { turnId: string; conversationId: string };
    await sleep(2500); // the agent is now running its tool
    await crashed.kill();

    const restarted = await startServiceProcess(env);
    try {
      expect(restarted.output()).toMatch(/settled 1 turn\(s\) interrupted/);
      const store = new SqliteConversationStore(path.join(dataDir, 'clauderun.db'));
      const turn = await store.getTurn(turnId);
      await store.close();
      expect(turn).toMatchObject({ status: 'failed', reason: expect.stringMatching(/service restarted/) });
      const next = await fetch(`${restarted.url}/api/conversation`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-user-id': 'erin' },
        body: JSON.stringify({ message: 'still there?', conversationId }),
      });
      expect(next.status).toBe(200);
      expect(await next.json()).toMatchObject({ status: 'succeeded', text: 'echo: still there?' });
    } finally {
      await restarted.stop();
    }
  });
});
