import { describe, expect, it } from 'vitest';
import { runScript, SANDBOX_PRELUDE, outputOf } from '../support/in-sandbox.js';
import { useServiceWithFake } from '../support/service.js';
import { readEvents } from '../support/sse.js';

/** A tool can post progress with the turn token: the store keeps only the turn's budget of it. */
describe('a tool in the sandbox, flooding progress events', () => {
  const running = useServiceWithFake({ CLAUDERUN_MAX_EVENTS_PER_TURN: '60', CLAUDERUN_MAX_EVENT_BYTES_PER_TURN: '200000' });

  async function flood(batches: number, textBytes: number) {
    const script = `${SANDBOX_PRELUDE}
(async () => {
  const statuses = [];
  for (let i = 0; i < ${batches}; i++) {
    const events = Array.from({ length: 100 }, (_, j) => ({ type: 'text', text: 'flood ' + i + '.' + j + ' ' + 'x'.repeat(${textBytes}) }));
    statuses.push((await call('POST', '/internal/turns/' + turnId + '/events', { headers: { authorization: 'Bearer ' + token }, body: { events } })).status);
  }
  console.log('POSTED', statuses.join(','));
})();`;
    const answer = await runScript(running.service, script, { userId: 'flooder' });
    const output = outputOf(answer);
    const stream = await readEvents(
      `${running.service.url}/api/conversations/${String(answer.body.conversationId)}/turns/${String(answer.body.turnId)}/events`,
      { 'x-user-id': 'flooder' },
    );
    return { output, events: stream.events };
  }

  it("keeps at most the budget's count of events and says once that the rest were dropped; the turn answers", async () => {
    const { output, events } = await flood(5, 10);
    expect(output).toMatch(/POSTED 204,204,204,204,204/);
    const dropped = events.filter((e) => e.event === 'events_dropped');
    expect(dropped).toHaveLength(1);
    expect(String((dropped[0]?.data.data as { message?: string } | undefined)?.message)).toMatch(/budget of 60 events/);
    // The budget, plus the notice and the result that ends every turn.
    expect(events.length).toBeLessThanOrEqual(62);
    expect(events.at(-1)?.event).toBe('result');
  });

  it("keeps at most the budget's bytes", async () => {
    const { events } = await flood(2, 5000);
    const progressBytes = events.filter((e) => e.event === 'text').reduce((sum, e) => sum + JSON.stringify(e.data.data).length, 0);
    expect(progressBytes).toBeLessThanOrEqual(200_000);
    expect(events.filter((e) => e.event === 'events_dropped')).toHaveLength(1);
  });
});
