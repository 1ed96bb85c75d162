import http from 'node:http';
import type net from 'node:net';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EgressPolicy } from '../../functions/src/egress/egress-policy.js';
import { startFakeAnthropic, type FakeAnthropic } from '../fixtures/fake-anthropic.js';
import { fillPath, PUBLIC_ROUTES } from '../../functions/src/contract/routes.js';
import { readEvents } from '../support/sse.js';
import { prompt, startService, type RunningService } from '../support/service.js';

/** Allows one made-up name, mapped to the test server on loopback; refuses the rest as a deployment would. */
const policy: EgressPolicy = {
  decide: async ({ host, port }) =>
    host.toLowerCase() === 'allowed.test'
      ? { allowed: true, addresses: ['127.0.0.1'] }
      : { allowed: false, reason: `this deployment does not allow ${host}:${port}` },
};

/**
 * The real sandbox and the real runner: the agent's curl goes through the runner's proxy, the
 * tunnel and the API's policy to a server on the host's loopback, which the sandbox has no other
 * way to reach.
 */
describe('egress through the tunnel', () => {
  let fake: FakeAnthropic;
  let service: RunningService;
  let target: http.Server;
  let targetPort: number;
  const seen: { host: string | undefined }[] = [];
  let connections = 0;
  beforeAll(async () => {
    target = http.createServer((req, res) => {
      seen.push({ host: req.headers.host });
      res.end(`hello from the allowed host (${req.method} ${req.url})`);
    });
    target.on('connection', () => connections++);
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
    targetPort = (target.address() as net.AddressInfo).port;
    fake = await startFakeAnthropic();
    service = await startService({ ANTHROPIC_API_KEY: fake.apiKey, ANTHROPIC_BASE_URL: fake.url }, undefined, { egressPolicy: policy });
  });
  afterAll(async () => {
    await service?.stop({ removeData: true });
    await fake?.close();
    target?.closeAllConnections();
    await new Promise<void>((resolve) => target?.close(() => resolve()));
  });

  async function bash(command: string) {
    const userId = `egress-${randomUUID()}`;
    const answer = await prompt(service, userId, { message: `bash: ${command}` });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    const path = fillPath(PUBLIC_ROUTES.turnEvents, {
      conversationId: String(answer.body.conversationId),
      turnId: String(answer.body.id ?? answer.body.turnId),
    });
    const { events } = await readEvents(`${service.url}${path}`, { 'x-user-id': userId });
    return { text: String(answer.body.text), egress: events.filter((e) => e.event === 'egress').map((e) => e.data.data as Record<string, unknown>) };
  }

  it('reaches an allowed host through the proxy, and records the connection', async () => {
    const { text, egress } = await bash(`curl -sS http://allowed.test:${targetPort}/hi`);
    expect(text).toContain('hello from the allowed host (GET /hi)');
    expect(seen.at(-1)).toEqual({ host: `allowed.test:${targetPort}` });
    expect(egress).toHaveLength(1);
    expect(egress[0]).toMatchObject({ host: 'allowed.test', port: targetPort, allowed: true });
    expect(egress[0]?.bytesIn).toEqual(expect.any(Number));
    expect(Number(egress[0]?.bytesIn)).toBeGreaterThan(0);
    expect(Number(egress[0]?.bytesOut)).toBeGreaterThan(0);
    expect(egress[0]?.reason).toBeUndefined();
  });

  it('answers a refused host with a 403 that says why, and opens nothing', async () => {
    const before = connections;
    const { text, egress } = await bash(`curl -sS -w ' status=%{http_code}' http://denied.test:${targetPort}/`);
    expect(text).toContain('status=403');
    expect(text).toContain(`this deployment does not allow denied.test:${targetPort}`);
    expect(connections).toBe(before);
    expect(egress).toEqual([
      expect.objectContaining({
        host: 'denied.test',
        port: targetPort,
        allowed: false,
        reason: `this deployment does not allow denied.test:${targetPort}`,
        bytesOut: 0,
        bytesIn: 0,
      }),
    ]);
  });

  it('refuses a request whose Host names another host than its URL', async () => {
    const before = connections;
    const { text } = await bash(`curl -sS -w ' status=%{http_code}' -H 'Host: denied.test' http://allowed.test:${targetPort}/`);
    expect(text).toContain('status=400');
    expect(text).toContain('names another host than the URL');
    expect(connections).toBe(before);
  });

  it('refuses a CONNECT whose first bytes are not a TLS ClientHello', async () => {
    const before = connections;
    // A plain request through CONNECT would reach the allowed address with any Host it likes.
    const { text, egress } = await bash(`curl -sS -p -w ' status=%{http_code}' http://allowed.test:${targetPort}/; echo " exit=$?"`);
    expect(text).not.toContain('hello from the allowed host');
    expect(connections).toBe(before);
    expect(egress).toEqual([expect.objectContaining({ host: 'allowed.test', allowed: false, reason: expect.stringContaining('TLS ClientHello') })]);
  });

  it('cannot reach the host without the proxy', async () => {
    const before = connections;
    const { text } = await bash(`curl -sS --noproxy '*' http://127.0.0.1:${targetPort}/ ; echo " exit=$?"`);
    expect(text).not.toContain('hello from the allowed host');
    expect(text).toMatch(/exit=[1-9]/);
    expect(connections).toBe(before);
  });
});
