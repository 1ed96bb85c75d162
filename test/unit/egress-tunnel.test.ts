import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { egressEvent } from '../../functions/src/contract/events.js';
import { runnerPaths } from '../../functions/src/contract/runner-paths.js';
import { egressUpgrade } from '../../functions/src/http/egress-upgrade.js';
import { newTurn } from '../../functions/src/domain/turn.js';
import type { EgressPolicy } from '../../functions/src/egress/egress-policy.js';
import { SqliteConversationStore } from '../../functions/src/store/sqlite.js';
import { apiTunnels } from '../../sandbox-image/runner/egress-proxy.js';
import { admitEgress, type EgressCaps } from '../../functions/src/domain/egress-budget.js';
import { EgressTunnels, type EgressAttempt, type EgressMeter } from '../../functions/src/egress/tunnel.js';
import { TunnelStream } from '../../functions/src/egress/tunnel-stream.js';

const allowAll: EgressPolicy = { decide: async () => ({ allowed: true, addresses: ['127.0.0.1'] }) };

const closers: (() => void)[] = [];
afterEach(() => {
  for (const close of closers.splice(0)) close();
});

async function listen(server: net.Server | WebSocketServer): Promise<number> {
  if (server instanceof WebSocketServer) {
    await new Promise<void>((resolve) => server.once('listening', resolve));
    return (server.address() as net.AddressInfo).port;
  }
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

const OPEN_CAPS: EgressCaps = { maxConnectionsPerTurn: 100, maxBytesPerTurn: 1 << 30, dailyBytesPerUser: null };
/** A turn with time left. */
const TURN = { id: 't', userId: 'u', deadlineAt: new Date(Date.now() + 3600_000).toISOString() };

/** A meter of its own, as the store counts: the attempts it recorded, in order. */
function memoryMeter(caps: EgressCaps = OPEN_CAPS): EgressMeter & { attempts: EgressAttempt[] } {
  const attempts: EgressAttempt[] = [];
  let used = { egressConnections: 0, egressBytes: 0 };
  return {
    attempts,
    open: async () => {
      const admission = admitEgress(used, undefined, caps, new Date());
      if (admission.admitted) used = { ...used, egressConnections: used.egressConnections + 1 };
      return admission;
    },
    record: async (_turn, attempt) => {
      attempts.push(attempt);
      used = { ...used, egressBytes: used.egressBytes + attempt.bytesIn + attempt.bytesOut };
    },
  };
}

/**
 * An API instance: the real egress route on a loopback port, counting by `meter`. Its turns are
 * made up: the route's token check is stood in for by one that takes the token as the turn's
 * deadline (test/e2e/egress-route.test.ts checks real tokens).
 */
async function apiInstance(meter: EgressMeter, policy: EgressPolicy = allowAll) {
  const tunnels = new EgressTunnels({ policy, meter, log: () => {} });
  const authenticateRunner = async (token: string | undefined, turnId?: string) =>
    newTurn({ id: turnId ?? '', conversationId: 'c', userId: TURN.userId, prompt: 'p', createdAt: TURN.deadlineAt, deadlineAt: token ?? '' });
  const route = egressUpgrade({ authenticateRunner }, tunnels, () => {});
  const server = http.createServer((_req, res) => res.end()).on('upgrade', route.upgrade);
  const port = await listen(server);
  closers.push(() => {
    server.closeAllConnections();
    server.close();
  });
  /** The client's end as the runner opens it, for a connection to `targetPort`. */
  return (targetPort: number, turnId = TURN.id, deadlineAt = TURN.deadlineAt) => {
    const url = `ws://127.0.0.1:${port}${runnerPaths.egress(turnId)}?host=h.test&port=${targetPort}&mode=http`;
    const client = new TunnelStream(new WebSocket(url, { headers: { authorization: `Bearer ${deadlineAt}` } }), 'runner');
    client.on('error', () => {});
    const allowed = new Promise<boolean>((resolve) => {
      client.once('control', () => resolve(true));
      client.once('close', () => resolve(false));
    });
    return { client, allowed };
  };
}

async function tunnelTo(targetPort: number, policy: EgressPolicy = allowAll) {
  const meter = memoryMeter();
  const connect = await apiInstance(meter, policy);
  return { ...connect(targetPort), attempts: meter.attempts };
}

const head = (port: number, length = 0) => `POST / HTTP/1.1\r\nHost: h.test:${port}\r\nContent-Length: ${length}\r\n\r\n`;

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  let text = '';
  for await (const chunk of stream) text += String(chunk);
  return text;
}

describe('the egress tunnel', () => {
  it('passes a half-close on: the target answers once the sandbox has ended its side, and the answer still arrives', async () => {
    const target = net.createServer({ allowHalfOpen: true }, (socket) => {
      let bytes = 0;
      socket.on('data', (chunk: Buffer) => (bytes += chunk.length));
      socket.on('end', () => socket.end(`got ${bytes} bytes`));
    });
    const port = await listen(target);
    closers.push(() => target.close());
    const { client, allowed, attempts } = await tunnelTo(port);
    expect(await allowed).toBe(true);
    const body = 'x'.repeat(100_000);
    client.end(`${head(port, body.length)}${body}`);
    const sent = Buffer.byteLength(head(port, body.length)) + body.length;
    expect(await readAll(client)).toBe(`got ${sent} bytes`);
    await expect.poll(() => attempts).toEqual([expect.objectContaining({ allowed: true, bytesOut: sent, bytesIn: `got ${sent} bytes`.length })]);
    expect(attempts[0]?.reason).toBeUndefined();
  });

  it('holds the target back while the sandbox does not read: a download waits in socket buffers, not in memory', async () => {
    let written = 0;
    const target = net.createServer((socket) => {
      socket.on('error', () => {});
      const chunk = Buffer.alloc(64 * 1024);
      const more = () => {
        while (written < 256 * 1024 * 1024) {
          written += chunk.length;
          if (!socket.write(chunk)) return void socket.once('drain', more);
        }
      };
      more();
    });
    const port = await listen(target);
    closers.push(() => target.close());
    const { client, allowed } = await tunnelTo(port);
    expect(await allowed).toBe(true);
    client.write(head(port));
    client.pause();
    await sleep(1000);
    const stalled = written;
    expect(stalled).toBeLessThan(32 * 1024 * 1024);
    await sleep(300);
    expect(written).toBe(stalled);
    client.destroy();
  });

  it('ends both sides when the target fails, and records why', async () => {
    const target = net.createServer((socket) => socket.once('data', () => socket.resetAndDestroy()));
    const port = await listen(target);
    closers.push(() => target.close());
    const { client, allowed, attempts } = await tunnelTo(port);
    expect(await allowed).toBe(true);
    client.write(head(port));
    await new Promise((resolve) => client.once('close', resolve));
    await expect.poll(() => attempts).toEqual([expect.objectContaining({ allowed: true, reason: expect.stringMatching(/failed|broke/) })]);
  });

  it('cuts a plain-HTTP connection that goes on past its one checked request: a second would name any Host', async () => {
    const received: Buffer[] = [];
    const target = net.createServer((socket) => socket.on('data', (chunk: Buffer) => received.push(chunk)).on('error', () => {}));
    const port = await listen(target);
    closers.push(() => target.close());
    const { client, allowed, attempts } = await tunnelTo(port);
    expect(await allowed).toBe(true);
    client.write(`${head(port, 2)}ok`);
    await sleep(100);
    client.write('GET / HTTP/1.1\r\nHost: another-tenant.example\r\n\r\n');
    await new Promise((resolve) => client.once('close', resolve));
    expect(Buffer.concat(received).toString()).not.toContain('another-tenant');
    await expect
      .poll(() => attempts)
      .toEqual([expect.objectContaining({ reason: 'cut: a plain-HTTP connection carries one request, whose Host was checked' })]);
  });

  it.each([
    ['a chunked body', 'Transfer-Encoding: chunked\r\n'],
    ['two lengths', 'Content-Length: 1\r\nContent-Length: 2\r\n'],
    // Servers that take a bare LF as a line end read a second request with another Host here.
    ['a bare LF', 'X: y\n\nGET /smuggled HTTP/1.1\nHost: evil.test\nX: z\r\n'],
    ['a folded line', 'X: y\r\n Host: evil.test\r\n'],
    ['a field name cut from its colon', 'Content-Length\r\n: 60\r\n'],
  ])('refuses a plain-HTTP request with %s, whose end it could not know', async (_what, extra) => {
    const target = net.createServer((socket) => socket.destroy());
    const port = await listen(target);
    closers.push(() => target.close());
    const { client, allowed, attempts } = await tunnelTo(port);
    expect(await allowed).toBe(true);
    client.write(`POST / HTTP/1.1\r\nHost: h.test:${port}\r\n${extra}\r\n`);
    await new Promise((resolve) => client.once('close', resolve));
    await expect.poll(() => attempts).toEqual([expect.objectContaining({ allowed: false })]);
  });

  // The runner reports the turn once the API has closed its tunnels: an event recorded after the
  // turn's result would be dropped.
  it('closes the tunnel only once the connection is recorded, whether it ended or was refused', async () => {
    const target = net.createServer((socket) => socket.once('data', () => socket.end('answer')));
    const port = await listen(target);
    closers.push(() => target.close());
    const events: string[] = [];
    const slow = memoryMeter({ ...OPEN_CAPS, maxConnectionsPerTurn: 1 });
    const meter: EgressMeter = {
      open: slow.open,
      record: async (turn, attempt) => {
        await sleep(300);
        events.push(`recorded ${attempt.allowed ? 'allowed' : 'refused'}`);
        await slow.record(turn, attempt);
      },
    };
    const connect = await apiInstance(meter);
    const ended = connect(port);
    expect(await ended.allowed).toBe(true);
    ended.client.end(head(port));
    expect(await readAll(ended.client)).toBe('answer');
    await new Promise((resolve) => ended.client.ws.once('close', resolve));
    events.push('closed');
    const refused = connect(port);
    expect(await refused.allowed).toBe(false);
    events.push('refused');
    expect(events).toEqual(['recorded allowed', 'closed', 'recorded refused', 'refused']);
  });

  it('refuses a connection it could not count, rather than opening it uncounted', async () => {
    const attempts: EgressAttempt[] = [];
    const connect = await apiInstance({
      open: async () => Promise.reject(new Error('ABORTED: too much contention')),
      record: async (_turn, attempt) => void attempts.push(attempt),
    });
    const { allowed } = connect(9);
    expect(await allowed).toBe(false);
    await expect
      .poll(() => attempts)
      .toEqual([expect.objectContaining({ allowed: false, reason: 'the connection could not be counted against the caps; try again' })]);
  });

  it("records a connection the sandbox's side abandons midway before the WebSocket closes, with what it carried", async () => {
    const target = net.createServer((socket) => {
      socket.on('error', () => {});
      socket.once('data', () => socket.write('x'.repeat(1000)));
    });
    const port = await listen(target);
    closers.push(() => target.close());
    const order: string[] = [];
    const meter = memoryMeter();
    const connect = await apiInstance({
      open: meter.open,
      record: async (turn, attempt) => {
        await sleep(200);
        order.push('recorded');
        await meter.record(turn, attempt);
      },
    });
    const { client, allowed } = connect(port);
    expect(await allowed).toBe(true);
    client.write(head(port));
    await new Promise((resolve) => client.once('data', resolve));
    const closed = new Promise((resolve) => client.ws.once('close', resolve));
    client.destroy();
    await closed;
    order.push('closed');
    expect(order).toEqual(['recorded', 'closed']);
    expect(meter.attempts).toEqual([expect.objectContaining({ allowed: true, bytesIn: 1000 })]);
    expect(meter.attempts[0]?.reason).toBeUndefined();
  });

  it("cuts a connection still open when its turn's time is up", async () => {
    const target = net.createServer((socket) => {
      socket.on('error', () => {});
      socket.once('data', () => socket.write('first bytes'));
    });
    const port = await listen(target);
    closers.push(() => target.close());
    const meter = memoryMeter();
    const connect = await apiInstance(meter);
    const { client, allowed } = connect(port, TURN.id, new Date(Date.now() + 500).toISOString());
    expect(await allowed).toBe(true);
    client.write(head(port));
    client.on('data', () => {});
    await new Promise((resolve) => client.ws.once('close', resolve));
    expect(meter.attempts).toEqual([expect.objectContaining({ allowed: true, reason: "cut: the turn's time is up", bytesIn: 11 })]);
  });

  it('refuses when the policy fails, rather than connecting', async () => {
    const { allowed, attempts } = await tunnelTo(9, { decide: async () => Promise.reject(new Error('lookup failed')) });
    expect(await allowed).toBe(false);
    await expect.poll(() => attempts).toEqual([expect.objectContaining({ allowed: false, reason: 'could not decide whether h.test:9 is allowed' })]);
  });
});

/**
 * In the cloud a turn's connections arrive at whichever instance of the runner function takes
 * them: the caps are counted in the store that all instances share (here the SQLite one).
 */
describe('the egress caps across instances of the API', () => {
  let dir: string;
  let store: SqliteConversationStore;
  beforeEach(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'clauderun-egress-caps-'));
    store = new SqliteConversationStore(path.join(dir, 'store.sqlite'));
    const now = new Date().toISOString();
    await store.createConversation({
      id: 'c',
      userId: TURN.userId,
      title: '',
      createdAt: now,
      updatedAt: now,
      sessionId: null,
      stateKey: null,
      options: {},
    });
    await store.startTurn(newTurn({ id: TURN.id, conversationId: 'c', userId: TURN.userId, prompt: 'p', createdAt: now, deadlineAt: now }));
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const storeMeter = (caps: EgressCaps): EgressMeter => ({
    open: (turn) => store.openEgress(turn, caps, new Date()),
    record: (turn, attempt) => store.recordEgress(turn, [egressEvent(attempt)], attempt.bytesOut + attempt.bytesIn),
  });

  /** A server that answers each request with `bytes` bytes, then closes. */
  async function download(bytes: number): Promise<number> {
    const target = net.createServer((socket) => {
      socket.on('error', () => {});
      socket.once('data', () => socket.end(Buffer.alloc(bytes, 'x')));
    });
    const port = await listen(target);
    closers.push(() => target.close());
    return port;
  }

  /** How many bytes arrive before the stream ends or breaks (a cut connection breaks). */
  const bytesUntilClosed = (stream: NodeJS.ReadableStream): Promise<number> =>
    new Promise((resolve) => {
      let n = 0;
      stream.on('data', (chunk: Buffer) => (n += chunk.length));
      stream
        .once('end', () => resolve(n))
        .once('error', () => resolve(n))
        .once('close', () => resolve(n));
    });

  /** Sends each connection's request at once; the bytes each received before it ended or was cut. */
  const downloadTogether = (connections: { client: TunnelStream }[], port: number) =>
    Promise.all(
      connections.map(({ client }) => {
        client.end(head(port));
        return bytesUntilClosed(client);
      }),
    );

  it("counts a turn's connections at two instances against one cap", async () => {
    const caps = { ...OPEN_CAPS, maxConnectionsPerTurn: 3 };
    const [a, b] = [await apiInstance(storeMeter(caps)), await apiInstance(storeMeter(caps))];
    const port = await download(10);
    const opened = await Promise.all([a(port), a(port), b(port), b(port)].map((c) => c.allowed));
    expect(opened.filter(Boolean)).toHaveLength(3);
    expect(await store.getTurn(TURN.id)).toMatchObject({ egressConnections: 3 });
  });

  it('a connection at one instance is judged by the bytes one at another instance carried', async () => {
    const caps = { ...OPEN_CAPS, maxBytesPerTurn: 300_000 };
    const [a, b] = [await apiInstance(storeMeter(caps)), await apiInstance(storeMeter(caps))];
    const port = await download(250_000);
    const first = a(port);
    expect(await first.allowed).toBe(true);
    first.client.end(head(port));
    expect(await bytesUntilClosed(first.client)).toBe(250_000);
    await expect.poll(async () => (await store.getTurn(TURN.id))?.egressBytes).toBeGreaterThan(250_000);
    const second = b(port);
    expect(await second.allowed).toBe(true);
    second.client.end(head(port));
    expect(await bytesUntilClosed(second.client)).toBeLessThan(250_000);
    await expect
      .poll(async () => (await store.listEvents(TURN.id, 0)).map((e) => (e.data as { reason?: string }).reason))
      .toEqual([undefined, 'cut: this turn went over its 300000 bytes out and in']);
  });

  it("two turns of one user with connections open at once on one instance share what the user's day has left", async () => {
    const now = new Date().toISOString();
    await store.createConversation({
      id: 'c2',
      userId: TURN.userId,
      title: '',
      createdAt: now,
      updatedAt: now,
      sessionId: null,
      stateKey: null,
      options: {},
    });
    await store.startTurn(newTurn({ id: 't2', conversationId: 'c2', userId: TURN.userId, prompt: 'p', createdAt: now, deadlineAt: now }));
    const a = await apiInstance(storeMeter({ ...OPEN_CAPS, dailyBytesPerUser: 300_000 }));
    const port = await download(200_000);
    const both = [a(port, TURN.id), a(port, 't2')];
    expect(await Promise.all(both.map((c) => c.allowed))).toEqual([true, true]);
    const received = await downloadTogether(both, port);
    expect(received.reduce((sum, n) => sum + n, 0)).toBeLessThanOrEqual(300_000);
  });

  it('two connections open at once on one instance share what the turn has left', async () => {
    const caps = { ...OPEN_CAPS, maxBytesPerTurn: 300_000 };
    const a = await apiInstance(storeMeter(caps));
    const port = await download(200_000);
    const both = [a(port), a(port)];
    expect(await Promise.all(both.map((c) => c.allowed))).toEqual([true, true]);
    const received = await downloadTogether(both, port);
    expect(received.reduce((sum, n) => sum + n, 0)).toBeLessThanOrEqual(300_000);
    expect(received.filter((n) => n === 200_000).length).toBeLessThanOrEqual(1);
  });
});

describe("the runner's tunnels", () => {
  it('holds a turn to its number of open tunnels: one more waits until one closes', async () => {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    const open: WebSocket[] = [];
    wss.on('connection', (ws) => {
      open.push(ws);
      ws.send(JSON.stringify({ t: 'allowed' }));
    });
    const port = await listen(wss);
    closers.push(() => wss.close());
    const tunnels = apiTunnels(`http://127.0.0.1:${port}`, 't', 'token', 2);
    // The proxy listens for errors of the streams it is given; so does this test.
    const opened = [1, 2, 3].map(() => tunnels.open('h.test', 443, 'tls').then((stream) => stream.on('error', () => {})));
    await Promise.all(opened.slice(0, 2));
    await sleep(200);
    expect(open).toHaveLength(2);
    open[0]?.close(1000);
    await opened[2];
    expect(open).toHaveLength(3);
    for (const ws of open) ws.close(1000);
    await tunnels.settled(1000);
  });
});
