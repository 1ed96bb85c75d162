import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runScript, SANDBOX_PRELUDE } from '../support/in-sandbox.js';
import { call, useServiceWithFake } from '../support/service.js';
import { sandboxNameOf } from '../support/sandbox-processes.js';

/**
 * A tool holds the turn token and can post the turn's result itself, then carry on. Its sandbox
 * must be gone before the turn is final, so that nothing runs uncounted by the running limits.
 */
describe('a tool in the sandbox, outliving its turn', () => {
  const running = useServiceWithFake({ CLAUDERUN_MAX_RUNNING_TURNS_PER_USER: '2', CLAUDERUN_MAX_TURNS_PER_MINUTE: '100' });

  const sandboxesOnHost = () => {
    const dir = path.join(running.service.dataDir, 'sandboxes');
    return existsSync(dir) ? readdirSync(dir) : [];
  };

  it('posts its result early and keeps running: the turn is final only once the sandbox is gone', async () => {
    const script = `${SANDBOX_PRELUDE}
(async () => {
  const answer = await call('POST', '/internal/turns/' + turnId + '/result', {
    headers: { authorization: 'Bearer ' + token },
    body: { outcome: 'succeeded', text: 'posted early', sessionId: '00000000-0000-4000-8000-000000000002', stateSaved: false },
  });
  console.log('POSTED', answer.status);
  setInterval(() => {}, 1000); // and stay
})();`;
    const userId = 'outliver';
    const answers = await Promise.all([runScript(running.service, script, { userId }), runScript(running.service, script, { userId })]);
    for (const answer of answers) {
      expect(answer.status).toBe(200);
      expect(answer.body).toMatchObject({ status: 'succeeded', text: 'posted early' });
    }
    // At the moment the answers arrive, nothing of either sandbox is left (a warm one may wait for
    // the next turn), and the user's running turns (which the limit counts) are none.
    const used = await Promise.all(
      answers.map((answer) => sandboxNameOf(running.service, userId, String(answer.body.conversationId), String(answer.body.turnId))),
    );
    expect(new Set(used).size).toBe(2);
    for (const name of used) expect(sandboxesOnHost()).not.toContain(name);
    const usage = await call(running.service, 'GET', '/api/usage', { userId });
    expect(usage.body.runningTurns).toBe(0);
    const third = await runScript(running.service, 'console.log("third")', { userId });
    expect(third.status).toBe(200);
  });
});

describe('a tool in the sandbox, hoarding connections to the API', () => {
  const running = useServiceWithFake();

  it("holds at most 64 connections at once; other users' turns still run", async () => {
    const script = `
const net = require('node:net');
(async () => {
  const open = [];
  for (let i = 0; i < 2000; i++) {
    const socket = net.connect('/run/clauderun/api.sock');
    socket.on('error', () => {});
    open.push(socket);
  }
  await new Promise((resolve) => setTimeout(resolve, 1500));
  console.log('STILL OPEN', open.filter((s) => !s.destroyed).length);
  process.exit(0);
})();`;
    const hoarder = runScript(running.service, script, { userId: 'hoarder' });
    const output = String((await hoarder).body.text);
    const stillOpen = Number(/STILL OPEN (\d+)/.exec(output)?.[1]);
    expect(stillOpen).toBeLessThanOrEqual(64);
    const bystander = await runScript(running.service, 'console.log("fine")', { userId: 'bystander' });
    expect(bystander.status).toBe(200);
  });
});
