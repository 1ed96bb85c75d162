import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type net from 'node:net';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EgressPolicy } from '../../functions/src/egress/egress-policy.js';
import { startFakeAnthropic, type FakeAnthropic } from '../fixtures/fake-anthropic.js';
import { fillPath, PUBLIC_ROUTES } from '../../functions/src/contract/routes.js';
import { readEvents } from '../support/sse.js';
import { call, prompt, startService, type RunningService } from '../support/service.js';

/** Allows two made-up names, mapped to the test server on loopback; refuses the rest as a deployment would. */
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
  let tlsTarget: https.Server;
  let tlsPort: number;
  let tlsConnections = 0;
  let ca: string;
  beforeAll(async () => {
    // A certificate of its own for allowed.test, which the sandbox's tools are told to trust.
    const dir = mkdtempSync(path.join(tmpdir(), 'clauderun-egress-ca-'));
    const [key, cert] = [path.join(dir, 'key.pem'), path.join(dir, 'cert.pem')];
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        key,
        '-out',
        cert,
        '-days',
        '1',
        '-subj',
        '/CN=allowed.test',
        '-addext',
        'subjectAltName=DNS:allowed.test',
      ],
      { stdio: 'ignore' },
    );
    ca = readFileSync(cert, 'utf8');
    tlsTarget = https.createServer({ key: readFileSync(key), cert: ca }, (req, res) => res.end(`hello over TLS (${req.headers.host})`));
    rmSync(dir, { recursive: true, force: true });
    tlsTarget.on('secureConnection', () => tlsConnections++);
    tlsTarget.on('connection', () => tlsConnections++);
    await new Promise<void>((resolve) => tlsTarget.listen(0, '127.0.0.1', resolve));
    tlsPort = (tlsTarget.address() as net.AddressInfo).port;
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
    tlsTarget?.closeAllConnections();
    await new Promise<void>((resolve) => tlsTarget?.close(() => resolve()));
  });

  /** Writes the test CA into the sandbox, then runs `command`, which may name it as $CA. */
  const withCa = (command: string) => `printf '%s' '${ca}' > /tmp/ca.pem; CA=/tmp/ca.pem; ${command}`;

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

  it('carries TLS through CONNECT to an allowed host whose ClientHello names it, the certificate checked end to end', async () => {
    const { text, egress } = await bash(withCa(`curl -sS --cacert $CA https://allowed.test:${tlsPort}/`));
    expect(text).toContain(`hello over TLS (allowed.test:${tlsPort})`);
    expect(egress).toEqual([expect.objectContaining({ host: 'allowed.test', port: tlsPort, allowed: true })]);
  });

  it('refuses a CONNECT whose ClientHello names another host than the one asked for, before connecting', async () => {
    const before = tlsConnections;
    // CONNECT allowed.test, then a ClientHello for other.test: the address is allowed, the name is not what was asked.
    const script = [
      `const net=require('net'),tls=require('tls');const p=new URL(process.env.HTTPS_PROXY);`,
      `const s=net.connect(p.port,p.hostname,()=>s.write('CONNECT allowed.test:${tlsPort} HTTP/1.1\\r\\nHost: allowed.test:${tlsPort}\\r\\n\\r\\n'));`,
      `s.once('data',(d)=>{console.log('proxy said',String(d).split('\\r\\n')[0]);`,
      `const t=tls.connect({socket:s,servername:'other.test',rejectUnauthorized:false});`,
      `t.on('secureConnect',()=>console.log('TLS UP')).on('error',(e)=>console.log('TLS FAILED',e.code)).on('close',()=>console.log('CLOSED'))});`,
    ].join('');
    const { text, egress } = await bash(`node -e "${script}"`);
    expect(text).toContain('proxy said HTTP/1.1 200');
    expect(text).not.toContain('TLS UP');
    expect(text).toContain('CLOSED');
    expect(tlsConnections).toBe(before);
    expect(egress).toEqual([
      expect.objectContaining({ host: 'allowed.test', allowed: false, reason: `the TLS ClientHello names other.test, not allowed.test` }),
    ]);
  });
});

describe("egress within a turn's caps", () => {
  let fake: FakeAnthropic;
  let service: RunningService;
  let target: http.Server;
  let targetPort: number;
  beforeAll(async () => {
    const sizes: Record<string, number> = { '/big': 1024 * 1024, '/mid': 200 * 1024 };
    target = http.createServer((req, res) => res.end(Buffer.alloc(sizes[req.url ?? ''] ?? 5, 'x')));
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
    targetPort = (target.address() as net.AddressInfo).port;
    fake = await startFakeAnthropic();
    service = await startService(
      {
        ANTHROPIC_API_KEY: fake.apiKey,
        ANTHROPIC_BASE_URL: fake.url,
        CLAUDERUN_EGRESS_MAX_CONNECTIONS_PER_TURN: '3',
        CLAUDERUN_EGRESS_MAX_BYTES_PER_TURN: String(256 * 1024),
        CLAUDERUN_DAILY_EGRESS_LIMIT_BYTES: String(500 * 1024),
      },
      undefined,
      { egressPolicy: policy },
    );
  });
  afterAll(async () => {
    await service?.stop({ removeData: true });
    await fake?.close();
    target?.closeAllConnections();
    await new Promise<void>((resolve) => target?.close(() => resolve()));
  });

  const egressOf = async (answer: { body: Record<string, unknown> }, userId: string) => {
    const path = fillPath(PUBLIC_ROUTES.turnEvents, { conversationId: String(answer.body.conversationId), turnId: String(answer.body.turnId) });
    const { events } = await readEvents(`${service.url}${path}`, { 'x-user-id': userId });
    return events.filter((e) => e.event === 'egress').map((e) => e.data.data as Record<string, unknown>);
  };

  it('refuses connections past the cap on them, saying so, and records the refusal once', async () => {
    const curl = `curl -sS -o /dev/null -w '%{http_code} ' http://allowed.test:${targetPort}/`;
    const answer = await prompt(service, 'capped', { message: `bash: ${curl}; ${curl}; ${curl}; ${curl}; ${curl}; ${curl}` });
    expect(String(answer.body.text)).toContain('200 200 200 403 403 403');
    // Past the cap a tool may try forever: the first refusal is the record, not each.
    const egress = await egressOf(answer, 'capped');
    expect(egress.map((e) => e.allowed)).toEqual([true, true, true, false]);
    expect(egress[3]?.reason).toBe('this turn has opened its 3 connections out; no more are allowed');
  });

  it('cuts a connection that takes the turn over its bytes', async () => {
    const answer = await prompt(service, 'big', { message: `bash: curl -sS -o /dev/null http://allowed.test:${targetPort}/big; echo " exit=$?"` });
    expect(String(answer.body.text)).toMatch(/exit=(18|56)/);
    const [attempt] = await egressOf(answer, 'big');
    expect(attempt).toMatchObject({ allowed: true, reason: `cut: this turn went over its ${256 * 1024} bytes out and in` });
    expect(Number(attempt?.bytesIn)).toBeLessThan(1024 * 1024);
  });

  it("counts every turn's bytes in the user's day, shown in /api/usage, and refuses a connection once the day's budget is used up", async () => {
    const user = `daily-${randomUUID()}`;
    const download = `bash: curl -sS -o /dev/null -w '%{http_code} %{size_download}' http://allowed.test:${targetPort}/mid; echo " exit=$?"`;
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await prompt(service, user, { message: download }));
    const texts = answers.map((answer) => String(answer.body.text));
    expect(texts[0]).toContain(`200 ${200 * 1024} exit=0`);
    expect(texts[1]).toContain(`200 ${200 * 1024} exit=0`);
    // The third is admitted with what is left of the day, and cut past it; the fourth is refused.
    expect(texts[2]).toMatch(/exit=(18|56)/);
    expect(texts[3]).toContain('403');
    const [, , cut, refused] = await Promise.all(answers.map((answer) => egressOf(answer, user)));
    expect(cut?.[0]?.reason).toBe(`cut: the daily egress budget of ${500 * 1024} bytes is used up`);
    expect(refused?.[0]).toMatchObject({
      allowed: false,
      reason: expect.stringMatching(/^the daily egress budget of 512000 bytes is used up \(\d+ carried today, UTC\)$/),
    });

    const usage = await call(service, 'GET', '/api/usage', { userId: user });
    expect(usage.body.limits).toMatchObject({ dailyEgressBytes: 500 * 1024 });
    expect(Number(usage.body.egressBytes)).toBeGreaterThanOrEqual(500 * 1024);
    // Each stored turn counts its own connections and bytes.
    const first = await call(service, 'GET', `/api/conversations/${String(answers[0]?.body.conversationId)}`, { userId: user });
    const [turn] = first.body.turns as Array<{ egress: { connections: number; bytes: number } }>;
    expect(turn?.egress.connections).toBe(1);
    expect(turn?.egress.bytes).toBeGreaterThan(200 * 1024);
    // Another user's day is their own.
    expect((await call(service, 'GET', '/api/usage', { userId: `other-${randomUUID()}` })).body.egressBytes).toBe(0);
  });
});

/**
 * The deployment's own policy, as configured: CLAUDERUN_EGRESS_ALLOW judges the name and port,
 * and the test-only CLAUDERUN_EGRESS_TEST_RESOLVE sends the allowed name to a server on loopback.
 */
describe('egress by the configured allowlist', () => {
  let fake: FakeAnthropic;
  let service: RunningService;
  let target: http.Server;
  let connections = 0;
  beforeAll(async () => {
    target = http.createServer((req, res) => res.end(`registry says hello (${req.headers.host} ${req.url})`));
    target.on('connection', () => connections++);
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
    const port = (target.address() as net.AddressInfo).port;
    fake = await startFakeAnthropic();
    service = await startService({
      ANTHROPIC_API_KEY: fake.apiKey,
      ANTHROPIC_BASE_URL: fake.url,
      CLAUDERUN_EGRESS_ALLOW: 'registry.allowed.test:80',
      CLAUDERUN_EGRESS_TEST_RESOLVE: `registry.allowed.test=127.0.0.1:${port}`,
    });
  });
  afterAll(async () => {
    await service?.stop({ removeData: true });
    await fake?.close();
    target?.closeAllConnections();
    await new Promise<void>((resolve) => target?.close(() => resolve()));
  });

  const run = async (command: string) => {
    const answer = await prompt(service, `allowlist-${randomUUID()}`, { message: `bash: ${command}` });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    return String(answer.body.text);
  };

  it('reaches the allowed name and port, and refuses another port and another name before connecting', async () => {
    expect(await run('curl -sS http://registry.allowed.test/pkg')).toContain('registry says hello (registry.allowed.test /pkg)');
    const before = connections;
    const otherPort = await run(`curl -sS -w ' status=%{http_code}' http://registry.allowed.test:8081/pkg`);
    expect(otherPort).toContain('status=403');
    expect(otherPort).toContain('registry.allowed.test:8081');
    const otherName = await run(`curl -sS -w ' status=%{http_code}' http://evil.test/`);
    expect(otherName).toContain('status=403');
    expect(otherName).toContain('evil.test:80');
    expect(connections).toBe(before);
  });
});
