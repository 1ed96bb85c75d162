import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { projectRoot } from '../../functions/src/project-root.js';
import type { FakeAnthropic } from '../fixtures/fake-anthropic.js';
import { startPlatform } from '../sim/platform/index.js';
import type { InstancePool } from '../sim/platform/pool.js';
import { startSimulation } from '../sim/simulation.js';
import { firestoreEmulatorUnavailable } from '../support/firestore-emulator.js';
import { line, ms } from './report.js';
import { summarize } from './stats.js';

/**
 * Cold starts on the simulated platform (`npm run sim`'s): the time from a request to its first
 * byte when no instance is running, so that one must start (a Functions Framework process loading
 * the function's module: for clauderun, `createClauderun` against the Firestore emulator). Beside
 * it, the same for an empty function (the framework's own share) and a request to a frozen,
 * warm instance (the thaw). What a real cold start adds (pulling the image, the sandbox of the
 * instance, Google's network) only a deployment can show.
 */

const IDLE_STOP_MS = 300;

/** Milliseconds from sending GET `url` to the first byte of the answer's body (or its end when it has none). */
function timeToFirstByte(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    http
      .get(url, (res) => {
        let first: number | undefined;
        res.once('data', () => (first ??= performance.now() - started));
        res.once('end', () => {
          if (res.statusCode !== 200) reject(new Error(`GET ${url}: HTTP ${res.statusCode}`));
          else resolve(first ?? performance.now() - started);
        });
        res.resume();
      })
      .once('error', reject);
  });
}

async function untilNoInstance(pool: InstancePool): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (pool.instances.length > 0) {
    if (Date.now() > deadline) throw new Error(`${pool.settings.name}: the idle instance was not stopped`);
    await sleep(50);
  }
  // Its process is gone, and the port with it.
  await Promise.all(pool.history.map((instance) => instance.whenExited()));
}

/** `runs` cold starts of `url`'s function, each after the last instance stopped; then `runs` requests to its frozen warm instance. */
async function measure(pool: InstancePool, url: string, runs: number): Promise<{ cold: number[]; warm: number[] }> {
  const cold: number[] = [];
  for (let i = 0; i < runs; i++) {
    await untilNoInstance(pool);
    cold.push(await timeToFirstByte(url));
  }
  const warm: number[] = [];
  for (let i = 0; i < runs; i++) {
    if (pool.instances.length === 0) await timeToFirstByte(url);
    // Frozen: a request in flight ended a moment ago.
    await sleep(20);
    warm.push(await timeToFirstByte(url));
  }
  return { cold, warm };
}

const row = (label: string, samples: number[]) => {
  const s = summarize(samples);
  line(label, `${ms(s.median)}${ms(s.p90)}${ms(s.min)}${ms(s.max)}`);
};

export async function platformColdStart(fake: FakeAnthropic, runs: number): Promise<boolean> {
  console.log(`\ncold start on the simulated platform: ${runs} each, time from request to first byte`);
  const unavailable = firestoreEmulatorUnavailable();
  if (unavailable !== undefined) {
    line('skipped', `no Firestore emulator (${unavailable})`);
    return true;
  }
  const dataDir = await mkdtemp(path.join(tmpdir(), 'clauderun-bench-platform-'));
  try {
    const sim = await startSimulation({
      dataDir,
      log: () => {},
      env: { ANTHROPIC_API_KEY: fake.apiKey, ANTHROPIC_BASE_URL: fake.url },
      instances: { idleStopMs: IDLE_STOP_MS },
      sweepEverySeconds: 0,
    });
    let api: { cold: number[]; warm: number[] };
    try {
      api = await measure(sim.publicPool, `${sim.url}/healthz`, runs);
    } finally {
      await sim.close();
    }
    const platform = await startPlatform({ names: ['empty'], dataDir: path.join(dataDir, 'empty'), log: () => {} });
    let empty: { cold: number[]; warm: number[] };
    try {
      const source = { dir: path.join(projectRoot(), 'dist', 'test', 'sim', 'platform', 'probe-function.js'), target: 'probe' };
      const pool = platform.deploy({ name: 'empty', source, env: {}, idleStopMs: IDLE_STOP_MS });
      empty = await measure(pool, `${platform.rootUrl('empty')}/whoami`, runs);
    } finally {
      await platform.close();
    }
    line('', `${'median'.padStart(9)}${'p90'.padStart(9)}${'min'.padStart(9)}${'max'.padStart(9)}`);
    row('clauderun, cold', api.cold);
    row('empty fn, cold', empty.cold);
    row('clauderun, thawed', api.warm);
    line('note', 'cold: a Functions Framework process started and the module loaded (clauderun: createClauderun on the Firestore emulator)');
    return true;
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
}
