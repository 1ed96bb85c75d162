import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { runnerPaths } from '../../functions/src/contract/runner-paths.js';
import { TUNNEL_CLOSE } from '../../functions/src/egress/tunnel-protocol.js';
import { ManualLauncher } from '../support/manual-launcher.js';
import { call, prompt, startService, type RunningService } from '../support/service.js';

/** How the egress route answers an upgrade: the status of a refused one, or how the opened one was closed. */
type Answer = { status: number } | { opened: true; closeCode: number; controls: string[] };

function upgrade(url: string, token?: string): Promise<Answer> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } });
    const controls: string[] = [];
    ws.on('unexpected-response', (_req, res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0 });
    });
    ws.on('message', (data, isBinary) => {
      if (!isBinary) controls.push(String(data));
    });
    ws.on('close', (code) => resolve({ opened: true, closeCode: code, controls }));
    ws.on('error', () => {});
  });
}

/** The runner's egress route itself, with the test in the runner's place (no sandbox, no proxy). */
describe('the egress route', () => {
  const launcher = new ManualLauncher();
  let service: RunningService;
  beforeAll(async () => {
    // No allowlist: every connection is refused by policy, after the token is checked.
    service = await startService({}, undefined, { launcher });
  });
  afterAll(async () => service?.stop({ removeData: true }));

  const egressUrl = (turnId: string, query: string) => `${service.internalUrl.replace('http:', 'ws:')}${runnerPaths.egress(turnId)}?${query}`;

  async function startTurn(userId: string) {
    const started = await prompt(service, userId, { message: 'hello' }, { prefer: 'respond-async' });
    expect(started.status).toBe(202);
    const { spec } = launcher.last();
    return { turnId: spec.turnId, token: spec.token, conversationId: String(started.body.conversationId), userId };
  }

  it.each([
    ['a port in hex', 'host=example.com&port=0x50&mode=http'],
    ['a port in exponent form', 'host=example.com&port=8e1&mode=http'],
    ['a port with a space', 'host=example.com&port=%2080&mode=http'],
    ['a port with a leading zero', 'host=example.com&port=080&mode=http'],
    ['port 0', 'host=example.com&port=0&mode=http'],
    ['a port over 65535', 'host=example.com&port=65536&mode=http'],
    ['no port', 'host=example.com&mode=tls'],
    ['another mode', 'host=example.com&port=443&mode=udp'],
    ['a host with a slash', 'host=example.com%2Fx&port=443&mode=tls'],
    ['a host with credentials', 'host=user%40example.com&port=443&mode=tls'],
    ['no host', 'port=443&mode=tls'],
  ])('refuses %s with a 400, before anything else', async (_what, query) => {
    const t = await startTurn(`route-400-${query.length}`);
    expect(await upgrade(egressUrl(t.turnId, query), t.token)).toEqual({ status: 400 });
  });

  it("refuses no token, another turn's token and a token whose turn has ended with a 401", async () => {
    const a = await startTurn('route-a');
    const b = await startTurn('route-b');
    const query = 'host=example.com&port=443&mode=tls';
    expect(await upgrade(egressUrl(a.turnId, query))).toEqual({ status: 401 });
    expect(await upgrade(egressUrl(a.turnId, query), b.token)).toEqual({ status: 401 });
    const done = { outcome: 'succeeded', text: 'done', sessionId: '00000000-0000-4000-8000-000000000001', stateSaved: false };
    const posted = await call({ url: service.internalUrl }, 'POST', runnerPaths.result(a.turnId), {
      body: done,
      headers: { authorization: `Bearer ${a.token}` },
    });
    expect(posted.status).toBe(200);
    expect(await upgrade(egressUrl(a.turnId, query), a.token)).toEqual({ status: 401 });
  });

  it('opens for its turn, then refuses by policy with the reason, and records the attempt on the turn', async () => {
    const t = await startTurn('route-open');
    const answer = await upgrade(egressUrl(t.turnId, 'host=example.com&port=443&mode=tls'), t.token);
    expect(answer).toMatchObject({ opened: true, closeCode: TUNNEL_CLOSE.refused });
    const controls = 'controls' in answer ? answer.controls.map((c) => JSON.parse(c) as { t: string; reason?: string }) : [];
    expect(controls).toEqual([
      { t: 'refused', code: TUNNEL_CLOSE.refused, reason: expect.stringContaining('this deployment does not allow example.com:443') },
    ]);
    const turn = await call(service, 'GET', `/api/conversations/${t.conversationId}/turns/${t.turnId}`, { userId: t.userId });
    expect(turn.body.egress).toEqual({ connections: 1, bytes: 0 });
  });
});
