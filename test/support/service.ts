import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createClauderun, type Clauderun, type Overrides } from '../../functions/src/app.js';
import { loadConfig, type Env } from '../../functions/src/config.js';
import { frameworkServer } from '../../functions/src/http/framework-server.js';
import { afterAll, beforeAll } from 'vitest';
import { startFakeAnthropic, type FakeAnthropic } from '../fixtures/fake-anthropic.js';
import { PUBLIC_ROUTES } from '../../functions/src/contract/routes.js';

export interface RunningService {
  url: string;
  port: number;
  /** The runner's listener (what a local sandbox's bridge leads to), on a loopback port of its own for tests. */
  internalUrl: string;
  dataDir: string;
  clauderun: Clauderun;
  logs: string[];
  /** Stops the service; the data dir stays unless `removeData`. */
  stop(options?: { removeData?: boolean }): Promise<void>;
}

let instances = 0;

/**
 * Tests send many turns as one user within a minute, which the default fair-use limits (2
 * running, 10 a minute) would refuse; the tests of those limits set their own.
 */
export const TEST_QUOTA_ENV = {
  CLAUDERUN_MAX_RUNNING_TURNS_PER_USER: '50',
  CLAUDERUN_MAX_TURNS_PER_MINUTE: '1000',
} as const;

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** The real service (Functions Framework server, real sandbox) on a free loopback port. */
export async function startService(env: Env = {}, dataDir?: string, overrides: Omit<Overrides, 'log'> = {}): Promise<RunningService> {
  const dir = dataDir ?? (await mkdtemp(path.join(tmpdir(), 'clauderun-test-')));
  const port = env.PORT !== undefined ? Number(env.PORT) : await freePort();
  const logs: string[] = [];
  const log = (message: string) => {
    logs.push(message);
    if (process.env.CLAUDERUN_TEST_LOGS) console.error(message);
  };
  const config = loadConfig({ CLAUDERUN_DATA_DIR: dir, ...TEST_QUOTA_ENV, ...env, PORT: String(port) });
  const clauderun = await createClauderun(config, { ...overrides, log });
  const server: http.Server = frameworkServer(`clauderun-test-${++instances}`, clauderun.app, log, clauderun.bodyLimits);
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const internal = http.createServer(clauderun.internalApp);
  await new Promise<void>((resolve) => internal.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    internalUrl: `http://127.0.0.1:${(internal.address() as net.AddressInfo).port}`,
    dataDir: dir,
    clauderun,
    logs,
    stop: async (options = {}) => {
      for (const listener of [server, internal]) {
        listener.closeAllConnections();
        await new Promise<void>((resolve) => listener.close(() => resolve()));
      }
      await clauderun.close();
      if (options.removeData) await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface ApiAnswer {
  status: number;
  body: Record<string, unknown>;
}

/** POST /api/conversation as a client would send it. */
export async function prompt(
  service: Pick<RunningService, 'url'>,
  userId: string | undefined,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<ApiAnswer> {
  const response = await fetch(`${service.url}${PUBLIC_ROUTES.startTurn}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(userId !== undefined ? { 'x-user-id': userId } : {}), ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

export interface ServiceWithFake {
  readonly fake: FakeAnthropic;
  readonly service: RunningService;
}

/**
 * For a test file: the fake model API and the service pointed at it, started before the tests
 * and stopped after them. `env` adds settings (a short timeout, say).
 */
export function useServiceWithFake(env: Env = {}): ServiceWithFake {
  let fake: FakeAnthropic | undefined;
  let service: RunningService | undefined;
  beforeAll(async () => {
    fake = await startFakeAnthropic();
    service = await startService({ ANTHROPIC_API_KEY: fake.apiKey, ANTHROPIC_BASE_URL: fake.url, ...env });
  });
  afterAll(async () => {
    await service?.stop({ removeData: true });
    await fake?.close();
  });
  const started = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('the service is not started (used outside a test?)');
    return value;
  };
  return {
    get fake() {
      return started(fake);
    },
    get service() {
      return started(service);
    },
  };
}

/**
 * A link of the API (relative to the request it answers, RFC 3986) as the path `call` takes:
 * resolved against POST /api/conversation, where `prompt` sends.
 */
export function linkPath(link: string, from: string = PUBLIC_ROUTES.startTurn): string {
  return new URL(link, `http://service.invalid${from}`).pathname;
}

/** Any API call as a client would make it; the body is JSON when there is one. */
export async function call(
  service: Pick<RunningService, 'url'>,
  method: string,
  path: string,
  options: { userId?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<ApiAnswer> {
  const response = await fetch(`${service.url}${path}`, {
    method,
    headers: {
      ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...(options.userId !== undefined ? { 'x-user-id': options.userId } : {}),
      ...options.headers,
    },
    ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
  });
  const text = await response.text();
  return { status: response.status, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) };
}
