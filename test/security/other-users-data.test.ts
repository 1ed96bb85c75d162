import { describe, expect, it } from 'vitest';
import { runScript, SANDBOX_PRELUDE, outputOf } from '../support/in-sandbox.js';
import { call, prompt, useServiceWithFake } from '../support/service.js';

/**
 * In header mode the public API trusts X-User-Id. A sandbox's bridge must lead to the runner's
 * routes alone, so that a tool cannot claim to be anyone and read or delete their data.
 */
describe("a tool in the sandbox, after other users' data", () => {
  const running = useServiceWithFake({ CLAUDERUN_AUTH: 'header' });

  it("cannot list, read or delete another user's conversations through the bridge", async () => {
    const victim = await prompt(running.service, 'victim', { message: 'my secret plans' });
    expect(victim.status).toBe(200);
    const conversationId = String(victim.body.conversationId);
    const script = `${SANDBOX_PRELUDE}
(async () => {
  const as = { headers: { 'x-user-id': 'victim' } };
  for (const [method, path] of [
    ['GET', '/api/conversations'],
    ['GET', '/api/conversations/${conversationId}'],
    ['GET', '/api/usage'],
    ['DELETE', '/api/conversations/${conversationId}'],
    ['POST', '/api/conversation'],
  ]) {
    const answer = await call(method, path, { ...as, body: method === 'POST' ? { message: 'spend their budget' } : undefined });
    console.log('PROBE', method, path, answer.status, answer.text.slice(0, 200));
  }
})();`;
    const output = outputOf(await runScript(running.service, script));
    expect(output.match(/PROBE \S+ \S+ 404 /g)).toHaveLength(5);
    expect(output).not.toContain('my secret plans');

    const after = await call(running.service, 'GET', `/api/conversations/${conversationId}`, { userId: 'victim' });
    expect(after.status).toBe(200);
    expect((after.body.turns as unknown[]).length).toBe(1);
    const list = await call(running.service, 'GET', '/api/conversations', { userId: 'victim' });
    expect((list.body.conversations as unknown[]).length).toBe(1);
  });
});
