import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import type { EgressPolicy } from '../../functions/src/egress/egress-policy.js';
import { EgressTunnels, type EgressAttempt } from '../../functions/src/egress/tunnel.js';
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

/** The API's end on a loopback port, carrying to `targetPort`; the client's end as the runner opens it. */
async function tunnelTo(targetPort: number, policy: EgressPolicy = allowAll) {
  const attempts: EgressAttempt[] = [];
  const tunnels = new EgressTunnels({
    policy,
    record: async (_turn, attempt) => void attempts.push(attempt),
    log: () => {},
    limits: { maxConnectionsPerTurn: 100, maxBytesPerTurn: 1 << 30 },
  });
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  wss.on('connection', (ws) => void tunnels.carry(ws, { turnId: 't', host: 'h.test', port: targetPort, mode: 'http' }));
  const port = await listen(wss);
  closers.push(() => wss.close());
  const client = new TunnelStream(new WebSocket(`ws://127.0.0.1:${port}/`));
  client.on('error', () => {});
  const allowed = new Promise<boolean>((resolve) => {
    client.once('control', () => resolve(true));
    client.once('close', () => resolve(false));
  });
  return { client, allowed, attempts };
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

  it('refuses when the policy fails, rather than connecting', async () => {
    const { allowed, attempts } = await tunnelTo(9, { decide: async () => Promise.reject(new Error('lookup failed')) });
    expect(await allowed).toBe(false);
    await expect.poll(() => attempts).toEqual([expect.objectContaining({ allowed: false, reason: 'could not decide whether h.test:9 is allowed' })]);
  });
});
