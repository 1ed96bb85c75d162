import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { idle, type WarmSandbox } from '../../functions/src/domain/warm-sandbox.js';
import { SqliteConversationStore } from '../../functions/src/store/sqlite.js';
import { startFakeAnthropic, type FakeAnthropic } from '../fixtures/fake-anthropic.js';
import { outputOf, runCommand, runScript, SANDBOX_PRELUDE, turnOf } from '../support/in-sandbox.js';
import { runnerPid, sandboxNameOf } from '../support/sandbox-processes.js';
import { call, prompt, startService, type RunningService } from '../support/service.js';
import type { Env } from '../../functions/src/config.js';

/**
 * Warm sandboxes with the real local launcher: started before their turn, holding nothing until a
 * turn claims one, used once. What a turn gets from the pool, and what a sandbox can make of it.
 */

let fake: FakeAnthropic;
let service: RunningService | undefined;
let store: SqliteConversationStore | undefined;

beforeAll(async () => {
  fake = await startFakeAnthropic();
});
afterEach(async () => {
  await store?.close();
  store = undefined;
  await service?.stop({ removeData: true });
  service = undefined;
});
afterAll(() => fake.close());

async function start(env: Env = {}): Promise<RunningService> {
  service = await startService({ ANTHROPIC_API_KEY: fake.apiKey, ANTHROPIC_BASE_URL: fake.url, ...env });
  // A second handle on the service's database, as `npm run keys` opens it.
  store = new SqliteConversationStore(path.join(service.dataDir, 'clauderun.db'));
  return service;
}

/** The warm sandboxes waiting for a turn, once `count` of them are ready (their runner asked for a turn). */
async function readyWarm(count: number, timeout = 20_000): Promise<WarmSandbox[]> {
  let waiting: WarmSandbox[] = [];
  await expect
    .poll(
      async () => {
        waiting = (await store!.listWarmSandboxes()).filter((w) => idle(w, new Date()) && w.seenAt !== null);
        return waiting.length;
      },
      { timeout, interval: 50 },
    )
    .toBe(count);
  return waiting;
}

/** The environment of a process on this host, as root reads it. */
const environOf = (pid: number): string[] => readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');

describe('a warm pool', () => {
  it('gives a turn the sandbox that was waiting for it, and starts the next one', async () => {
    const running = await start();
    const [waiting] = await readyWarm(1);
    const answer = await prompt(running, 'alice', { message: 'hello' });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    expect(answer.body.text).toBe('echo: hello');
    const { conversationId, turnId } = turnOf(answer);
    expect(await sandboxNameOf(running, 'alice', conversationId, turnId)).toBe(waiting!.id);
    // Used once: the next turn gets another sandbox, started for the pool after the claim.
    const [next] = await readyWarm(1);
    expect(next!.id).not.toBe(waiting!.id);
    const again = await prompt(running, 'alice', { message: 'again', conversationId });
    expect(await sandboxNameOf(running, 'alice', conversationId, turnOf(again).turnId)).toBe(next!.id);
  });

  it('a warm sandbox holds no turn and no turn token before its claim: only its pool token', async () => {
    await start();
    const [waiting] = await readyWarm(1);
    const env = environOf(runnerPid(waiting!.id)!);
    expect(env.filter((entry) => /^(SANDBOX_ID|POOL_TOKEN|TURN_ID|TURN_TOKEN)=/.test(entry)).map((entry) => entry.split('=')[0])).toEqual(
      expect.arrayContaining(['SANDBOX_ID', 'POOL_TOKEN']),
    );
    expect(env.some((entry) => /^TURN_(ID|TOKEN)=/.test(entry))).toBe(false);
    expect(env.join('\n')).not.toContain('crt1.');
  });

  it("a pool token, read by the agent from its runner, gets its own sandbox's turn and nothing else", async () => {
    const running = await start({ CLAUDERUN_WARM_SANDBOXES: '2' });
    await readyWarm(2);
    // The script reads its runner's pool token and tries it everywhere a sandbox can reach.
    const script = `${SANDBOX_PRELUDE}
const fs = require('node:fs');
const env = {};
for (const pid of fs.readdirSync('/proc').filter((p) => /^\\d+$/.test(p))) {
  try {
    for (const entry of fs.readFileSync('/proc/' + pid + '/environ', 'utf8').split('\\0')) {
      const at = entry.indexOf('=');
      if (at > 0) env[entry.slice(0, at)] = entry.slice(at + 1);
    }
  } catch {}
}
(async () => {
  const auth = { authorization: 'Bearer ' + env.POOL_TOKEN };
  const own = await call('POST', '/internal/warm/' + env.SANDBOX_ID + '/claim', { headers: auth });
  const other = await call('POST', '/internal/warm/' + process.argv[2] + '/claim', { headers: auth });
  const turn = await call('GET', '/internal/turns/' + turnId, { headers: auth });
  const model = await call('POST', '/internal/model/v1/messages', {
    headers: { 'x-api-key': env.POOL_TOKEN },
    body: { model: 'claude-haiku-5-5', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] },
  });
  const ownClaim = JSON.parse(own.text);
  console.log(JSON.stringify({
    found: typeof env.POOL_TOKEN === 'string',
    own: [own.status, ownClaim.claim, ownClaim.turn && ownClaim.turn.turnId === turnId],
    other: other.status,
    turn: turn.status,
    model: model.status,
  }));
})();
`;
    const answer = await runScript(running, script.replace('process.argv[2]', `'${(await readyWarm(2))[1]!.id}'`));
    const seen = JSON.parse(/\{.*\}/.exec(outputOf(answer))![0]) as Record<string, unknown>;
    expect(seen).toEqual({ found: true, own: [200, 'turn', true], other: 401, turn: 401, model: 401 });
  });

  it('ends a turn whose claimed sandbox dies without a word as failed, and the next turn gets a sandbox', async () => {
    const running = await start();
    await readyWarm(1);
    const started = await prompt(running, 'victim', { message: 'bash: node -e "setTimeout(() => {}, 60000)"' }, { prefer: 'respond-async' });
    const { conversationId, turnId } = started.body as { conversationId: string; turnId: string };
    const name = await sandboxNameOf(running, 'victim', conversationId, turnId);
    await expect.poll(() => runnerPid(name), { timeout: 10_000 }).toBeDefined();
    await expect.poll(async () => (await store!.getTurn(turnId))?.status, { timeout: 10_000 }).toBe('running');
    process.kill(runnerPid(name)!, 'SIGKILL');
    await expect
      .poll(async () => (await call(running, 'GET', `/api/conversations/${conversationId}/turns/${turnId}`, { userId: 'victim' })).body, {
        timeout: 15_000,
      })
      .toMatchObject({ status: 'failed', reason: expect.stringMatching(/without reporting a result/) });
    expect(existsSync(path.join(running.dataDir, 'sandboxes', name))).toBe(false);
    const next = await prompt(running, 'victim', { message: 'after', conversationId });
    expect(next.body).toMatchObject({ status: 'succeeded', text: 'echo: after' });
  });

  it('a warm sandbox that waits past its time stops, and another takes its place', async () => {
    const running = await start({ CLAUDERUN_WARM_SANDBOX_IDLE_SECONDS: '10' });
    const [first] = await readyWarm(1);
    const pid = runnerPid(first!.id)!;
    await expect.poll(async () => (await store!.listWarmSandboxes()).map((w) => w.id), { timeout: 30_000 }).not.toContain(first!.id);
    const [second] = await readyWarm(1);
    expect(second!.id).not.toBe(first!.id);
    expect(existsSync(`/proc/${pid}`)).toBe(false);
    expect(readdirSync(path.join(running.dataDir, 'sandboxes'))).not.toContain(first!.id);
  }, 60_000);

  it('gives way to turns near the running cap: warm and running sandboxes together stay within it', async () => {
    const running = await start({ CLAUDERUN_WARM_SANDBOXES: '2', CLAUDERUN_MAX_RUNNING_SANDBOXES: '2' });
    await readyWarm(2);
    const long = (user: string) => prompt(running, user, { message: 'bash: node -e "setTimeout(() => {}, 60000)"' }, { prefer: 'respond-async' });
    const first = await long('u1');
    expect(first.status).toBe(202);
    // One running: one warm may wait beside it.
    await expect.poll(async () => (await store!.listWarmSandboxes()).filter((w) => idle(w, new Date())).length, { timeout: 10_000 }).toBe(1);
    const second = await long('u2');
    expect(second.status).toBe(202);
    // Two running, at the cap: none waits.
    await expect.poll(async () => (await store!.listWarmSandboxes()).filter((w) => idle(w, new Date())).length, { timeout: 10_000 }).toBe(0);
    const cgroupsOf = () => readdirSync(path.join(running.dataDir, 'sandboxes')).length;
    expect(cgroupsOf()).toBe(2);
    for (const [user, started] of [
      ['u1', first],
      ['u2', second],
    ] as const) {
      const { conversationId, turnId } = started.body as { conversationId: string; turnId: string };
      await call(running, 'POST', `/api/conversations/${conversationId}/turns/${turnId}/cancel`, { userId: user });
    }
    // Turns over: the pool is whole again.
    await readyWarm(2);
  });

  it('stops its warm sandboxes with the service', async () => {
    const running = await start({ CLAUDERUN_WARM_SANDBOXES: '2' });
    const waiting = await readyWarm(2);
    const pids = waiting.map((w) => runnerPid(w.id)!);
    await store!.close();
    store = undefined;
    await running.stop();
    service = undefined;
    for (const pid of pids) expect(existsSync(`/proc/${pid}`)).toBe(false);
    expect(readdirSync(path.join(running.dataDir, 'sandboxes'))).toEqual([]);
  });

  it('with a pool of 0 starts no sandbox before a turn', async () => {
    const running = await start({ CLAUDERUN_WARM_SANDBOXES: '0' });
    const answer = await runCommand(running, 'echo cold', { userId: 'alice' });
    expect(outputOf(answer)).toContain('cold');
    expect(await store!.listWarmSandboxes()).toEqual([]);
    const { conversationId, turnId } = turnOf(answer);
    expect(await sandboxNameOf(running, 'alice', conversationId, turnId)).toBe(turnId);
  });
});
