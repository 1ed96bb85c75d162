import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { RUNNER_ENV } from '../../functions/src/contract/runner-env.js';

/**
 * A stand-in for the runner, for tests of a launcher rather than of the agent: it starts in
 * seconds, asks the API what to do (as the turn, with its token) and does exactly that. What it
 * does is told to the stand-in API by the test, so the spec's token stays the opaque string the
 * launcher is given.
 */
export interface Plan {
  /** What the program does once it has its plan. */
  does: 'result' | 'exit' | 'oom' | 'hang';
  /** For 'result' and 'exit': the exit code. */
  exitCode?: number;
  /** Leaves a detached process behind that runs on after the program's own end. */
  leave?: boolean;
}

/** Beats are sent this often by every process of the stand-in while it runs. */
export const BEAT_MS = 100;

/**
 * Every process of the stand-in names its turn on its command line (`si-<turn id>`), so that
 * the host can tell whether anything of a sandbox still runs, whatever namespace it runs in.
 */
export const processMarker = (turnId: string): string => `si-${turnId}`;

const LEFTOVER = `
const http = require('node:http');
const { writeFileSync } = require('node:fs');
const { ${RUNNER_ENV.apiUrl}: API_URL, ${RUNNER_ENV.turnId}: TURN_ID } = process.env;
setInterval(() => {
  const req = http.request(API_URL + '/stand-in/' + TURN_ID + '/beat?from=leftover', { method: 'POST', agent: false }, (res) => {
    res.resume();
    writeFileSync('/tmp/leftover-beats', '');
  });
  req.on('error', () => {});
  req.end();
}, ${BEAT_MS});
`;

const PROGRAM = `
import http from 'node:http';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

const { ${RUNNER_ENV.apiUrl}: API_URL, ${RUNNER_ENV.turnId}: TURN_ID, ${RUNNER_ENV.turnToken}: TURN_TOKEN } = process.env;
process.title = ${JSON.stringify(processMarker(''))} + TURN_ID;

function send(method, what, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(API_URL + '/stand-in/' + TURN_ID + what, {
      method,
      agent: false,
      headers: { authorization: 'Bearer ' + TURN_TOKEN, 'content-type': 'application/json' },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (c) => (text += c)).on('end', () => resolve({ status: res.statusCode, text }));
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

// The bridge's listener in the sandbox starts alongside the program: the first connection may come too early.
let answer;
for (let attempt = 0; answer === undefined; attempt++) {
  try {
    answer = await send('GET', '/plan');
  } catch (error) {
    if (attempt >= 100) throw error;
    await sleep(50);
  }
}
if (answer.status !== 200) process.exit(97);
const plan = JSON.parse(answer.text);
if (plan.leave) {
  spawn(process.execPath, ['-e', ${JSON.stringify(LEFTOVER)}, ${JSON.stringify(processMarker(''))} + TURN_ID], { detached: true, stdio: 'ignore' }).unref();
}
const beat = setInterval(() => send('POST', '/beat?from=program').catch(() => {}), ${BEAT_MS});
if (plan.does === 'result') {
  await send('POST', '/result', { text: 'done' });
  clearInterval(beat);
  process.exit(plan.exitCode ?? 0);
}
if (plan.does === 'exit') {
  await send('POST', '/beat?from=program');
  // What it leaves behind is seen running before the program ends.
  for (let waited = 0; plan.leave && !existsSync('/tmp/leftover-beats') && waited < 10000; waited += 20) await sleep(20);
  process.exit(plan.exitCode ?? 1);
}
if (plan.does === 'oom') {
  const hoard = [];
  for (;;) hoard.push(Buffer.alloc(16 * 1024 * 1024, 1));
}
`;

/** Writes the stand-in where a launcher can take it as its runner; `remove` deletes it. */
export async function writeStandInRunner(): Promise<{ file: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'clauderun-stand-in-'));
  const file = path.join(dir, 'runner.mjs');
  await writeFile(file, PROGRAM);
  return { file, remove: () => rm(dir, { recursive: true, force: true }) };
}

export interface TurnSeen {
  /** The token the program presented when it asked for its plan. */
  token: string;
  result?: unknown;
  /** Beats received, by which process sent them. */
  beats: { program: number; leftover: number };
}

/** The API as stand-in programs reach it: it hands out plans and records what they send. */
export interface StandInApi {
  port: number;
  url: string;
  /** What the program of `turnId`, presenting `token`, is told to do. */
  plan(turnId: string, token: string, plan: Plan): void;
  /** What the program of a turn sent so far; undefined until it asked for its plan. */
  seen(turnId: string): TurnSeen | undefined;
  /** Resolves once the program of the turn has asked for its plan and sent its first beat; rejects if it has not within `withinMs`. */
  running(turnId: string, withinMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startStandInApi(): Promise<StandInApi> {
  const plans = new Map<string, { token: string; plan: Plan }>();
  const seen = new Map<string, TurnSeen>();
  const waiting = new Map<string, Array<() => void>>();
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://stand-in');
      const match = /^\/stand-in\/([^/]+)\/(plan|beat|result)$/.exec(url.pathname);
      const turnId = match?.[1] ?? '';
      const expected = plans.get(turnId);
      if (match === null || expected === undefined) return res.writeHead(404).end();
      if (match[2] === 'plan') {
        const token = (req.headers.authorization ?? '').replace(/^Bearer /, '');
        seen.set(turnId, { token, beats: { program: 0, leftover: 0 } });
        if (token !== expected.token) return res.writeHead(401).end();
        return res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(expected.plan));
      }
      const turn = seen.get(turnId);
      if (turn === undefined) return res.writeHead(409).end();
      if (match[2] === 'result') turn.result = JSON.parse(body) as unknown;
      if (match[2] === 'beat') {
        turn.beats[url.searchParams.get('from') === 'leftover' ? 'leftover' : 'program'] += 1;
        for (const wake of waiting.get(turnId)?.splice(0) ?? []) wake();
      }
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    plan: (turnId, token, plan) => plans.set(turnId, { token, plan }),
    seen: (turnId) => seen.get(turnId),
    running: (turnId, withinMs = 15_000) =>
      (seen.get(turnId)?.beats.program ?? 0) > 0
        ? Promise.resolve()
        : new Promise<void>((resolve, reject) => {
            const timer = setTimeout(
              () => reject(new Error(`the program of turn ${turnId} is not running after ${withinMs} ms: ${JSON.stringify(seen.get(turnId))}`)),
              withinMs,
            );
            const wake = () => {
              clearTimeout(timer);
              resolve();
            };
            waiting.set(turnId, [...(waiting.get(turnId) ?? []), wake]);
          }),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
