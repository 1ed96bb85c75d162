import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { runnerPaths } from '../../functions/src/contract/runner-paths.js';
import { ManualLauncher } from '../support/manual-launcher.js';
import { call, prompt, startService, type RunningService } from '../support/service.js';

/** How the egress route answers an upgrade: the status of a refused one (and its body), or how the opened one was closed. */
type Answer = { status: number; body?: unknown } | { opened: true; closeCode: number; controls: string[] };

function upgrade(url: string, token?: string): Promise<Answer> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } });
    const controls: string[] = [];
    ws.on('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => (text += String(chunk)));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as unknown }));
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
    expect(await upgrade(egressUrl(t.turnId, query), t.token)).toMatchObject({ status: 400 });
  });

  it("refuses no token, another turn's token and a token whose turn has ended with a 401", async () => {
    const a = await startTurn('route-a');
    const b = await startTurn('route-b');
    const query = 'host=example.com&port=443&mode=tls';
    expect(await upgrade(egressUrl(a.turnId, query))).toMatchObject({ status: 401 });
    expect(await upgrade(egressUrl(a.turnId, query), b.token)).toMatchObject({ status: 401 });
    const done = { outcome: 'succeeded', text: 'done', sessionId: '00000000-0000-4000-8000-000000000001', stateSaved: false };
    const posted = await call({ url: service.internalUrl }, 'POST', runnerPaths.result(a.turnId), {
      body: done,
      headers: { authorization: `Bearer ${a.token}` },
    });
    expect(posted.status).toBe(200);
    expect(await upgrade(egressUrl(a.turnId, query), a.token)).toMatchObject({ status: 401 });
  });

  it('refuses a handshake ws would refuse (here: no Sec-WebSocket-Key) with a 400, before it counts it', async () => {
    const t = await startTurn('route-handshake');
    const path = `${runnerPaths.egress(t.turnId)}?host=example.com&port=443&mode=tls`;
    const { port } = new URL(service.internalUrl);
    const socket = net.connect(Number(port), '127.0.0.1');
    socket.on('error', () => {});
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += String(chunk)));
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.write(
      `GET ${path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer ${t.token}\r\n\r\n`,
    );
    await closed;
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer).toContain('not a WebSocket handshake');
    const turn = await call(service, 'GET', `/api/conversations/${t.conversationId}/turns/${t.turnId}`, { userId: t.userId });
    expect(turn.body.egress).toEqual({ connections: 0, bytes: 0 });
  });

  // A refused tunnel costs the API no WebSocket: a flood of them held open would each hold its buffers.
  it('refuses by policy before any WebSocket, with a 403 that gives the reason, and records the attempt on the turn', async () => {
    const t = await startTurn('route-open');
    const answer = await upgrade(egressUrl(t.turnId, 'host=example.com&port=443&mode=tls'), t.token);
    expect(answer).toEqual({
      status: 403,
      body: { error: { code: 'forbidden', message: expect.stringContaining('this deployment does not allow example.com:443') } },
    });
    const turn = await call(service, 'GET', `/api/conversations/${t.conversationId}/turns/${t.turnId}`, { userId: t.userId });
    expect(turn.body.egress).toEqual({ connections: 1, bytes: 0 });
  });
});
