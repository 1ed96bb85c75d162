import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULT_LIMITS } from '../../functions/src/config.js';
import { idle } from '../../functions/src/domain/warm-sandbox.js';
import { RUNNER_CONCURRENCY, RUNNER_MEMORY_MIB } from '../../infra/function-roles.js';
import { openFirestore } from '../../functions/src/store/firestore-client.js';
import { FirestoreConversationStore } from '../../functions/src/store/firestore.js';
import type { FakeAnthropic } from '../fixtures/fake-anthropic.js';
import { startSimulation, type Simulation } from '../sim/simulation.js';
import { firestoreEmulatorUnavailable } from '../support/firestore-emulator.js';
import { linkPath, prompt } from '../support/service.js';
import { readEvents } from '../support/sse.js';
import { line, ms } from './report.js';
import { summarize } from './stats.js';

/**
 * Time to running on the simulated platform: from the POST of a prompt to its turn's `running`
 * event at an SSE client, every Cloud Run execution starting after a realistic delay. Google
 * publishes no start time for an execution; 8-9 s are reported for small images (the fake Cloud
 * Run's notes), so the sim is given 8 s here. Cold: no warm pool, each turn's execution starts
 * for it. Warm: a pool of one, each turn claiming a sandbox started ahead (the sweeper fills the
 * pool first; after each claim the request that claimed starts the next, ready 8 s later, which
 * the bench waits for, as a user's next prompt would come some seconds after the last answer).
 */

const START_DELAY_MS = 8000;
const USER = 'bench-time-to-running';
const WARM_TARGET_MS = 1000;

export async function timeToRunning(fake: FakeAnthropic, runs: number): Promise<boolean> {
  console.log(`\ntime to running on the simulated platform: ${runs} turns each, each execution starting ${START_DELAY_MS / 1000} s after runJob`);
  const unavailable = firestoreEmulatorUnavailable();
  if (unavailable !== undefined) {
    line('skipped', `no Firestore emulator (${unavailable})`);
    return true;
  }
  const cold = await inSimulation(fake, '0', (sim) => measure(sim, runs, async () => {}));
  const warm = await inSimulation(fake, '1', async (sim) => {
    const pool = await poolOf(sim);
    try {
      await sim.scheduler.runNow();
      return await measure(sim, runs, () => pool.ready());
    } finally {
      await pool.close();
    }
  });
  const c = summarize(cold.times);
  const w = summarize(warm.times);
  line('time to running', `cold${ms(c.median)}, warm${ms(w.median)}  (medians; p90 cold${ms(c.p90)}, warm${ms(w.p90)})`);
  line('target', `warm under ${WARM_TARGET_MS / 1000} s: ${w.median < WARM_TARGET_MS ? 'MET' : 'NOT MET'}`);
  line('warm idle, cloud', warmIdleCostInTheCloud());
  return cold.correct && warm.correct;
}

/**
 * Tier 1 list prices (cloud.google.com/run/pricing): jobs' CPU as read there; jobs' memory as
 * third parties quote the page (not seen on it); request-based services' CPU and memory (the
 * runner function holding the warm sandboxes' long polls) as the page read. Estimates, not bills.
 */
const JOB_CPU_PER_SECOND = 0.000018;
const JOB_GIB_PER_SECOND = 0.000002;
const FUNCTION_CPU_PER_SECOND = 0.000024;
const FUNCTION_GIB_PER_SECOND = 0.0000025;
/** The runner function's size (infra/function-roles.ts) and the waiting polls one instance holds at Cloud Run's 60% target of its 28. */
const RUNNER_CPUS = 1;
const RUNNER_GIB = RUNNER_MEMORY_MIB / 1024;
const POLLS_PER_RUNNER_INSTANCE = Math.floor(RUNNER_CONCURRENCY * 0.6);
/** A pool renews a warm sandbox up to 90 s before it expires, at the default 300 s idle time. */
const RENEWAL_OVERLAP = 1 + 90 / DEFAULT_LIMITS.CLAUDERUN_WARM_SANDBOX_IDLE_SECONDS;

/** What one warm sandbox of the default size costs an hour while it waits, at list prices. */
function warmIdleCostInTheCloud(): string {
  const cpus = DEFAULT_LIMITS.CLAUDERUN_SANDBOX_CPUS;
  const gib = DEFAULT_LIMITS.CLAUDERUN_SANDBOX_MEMORY_MB / 1024;
  const execution = (cpus * JOB_CPU_PER_SECOND + gib * JOB_GIB_PER_SECOND) * 3600;
  const runner = (RUNNER_CPUS * FUNCTION_CPU_PER_SECOND + RUNNER_GIB * FUNCTION_GIB_PER_SECOND) * 3600;
  const dollars = (n: number) => `$${n.toFixed(3)}`;
  return (
    `${dollars(execution)}/h per execution (${cpus} vCPU, ${gib} GiB), ${dollars(execution * RENEWAL_OVERLAP)}/h with renewals; ` +
    `the runner instance holding up to ${POLLS_PER_RUNNER_INSTANCE} of their polls ${dollars(runner)}/h (estimates at Tier 1 list prices)`
  );
}

async function inSimulation<T>(fake: FakeAnthropic, warmSandboxes: string, work: (sim: Simulation) => Promise<T>): Promise<T> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'clauderun-bench-running-'));
  try {
    const sim = await startSimulation({
      dataDir,
      log: () => {},
      env: { ANTHROPIC_API_KEY: fake.apiKey, ANTHROPIC_BASE_URL: fake.url, CLAUDERUN_WARM_SANDBOXES: warmSandboxes },
      cloudRun: { startDelayMs: START_DELAY_MS },
      sweepEverySeconds: 0,
    });
    try {
      return await work(sim);
    } finally {
      await sim.close();
    }
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
}

/** The sim's warm sandboxes, as its store holds them: `ready` waits until one waits for a turn. */
async function poolOf(sim: Simulation) {
  const env = sim.fakes.apiEnv(0);
  const store = new FirestoreConversationStore(
    await openFirestore({ projectId: env.GOOGLE_CLOUD_PROJECT ?? '', emulatorHost: env.FIRESTORE_EMULATOR_HOST }),
  );
  return {
    async ready() {
      for (let waited = 0; waited < 60_000; waited += 100) {
        const waiting = (await store.listWarmSandboxes()).filter((w) => idle(w, new Date()) && w.seenAt !== null);
        if (waiting.length > 0) return;
        await sleep(100);
      }
      throw new Error('no warm sandbox was ready within 60 s');
    },
    close: () => store.close(),
  };
}

async function measure(sim: Simulation, runs: number, beforeEach: () => Promise<void>): Promise<{ times: number[]; correct: boolean }> {
  const client = { url: sim.rootUrl };
  const times: number[] = [];
  let correct = true;
  for (let i = 0; i < runs; i++) {
    await beforeEach();
    const started = performance.now();
    const answer = await prompt(client, USER, { message: 'hello' }, { prefer: 'respond-async' });
    if (answer.status !== 202) throw new Error(`the turn did not start (HTTP ${answer.status}): ${JSON.stringify(answer.body)}`);
    let runningAt: number | undefined;
    const links = answer.body.links as { events: string };
    const { events } = await readEvents(`${sim.rootUrl}${linkPath(links.events)}`, { 'x-user-id': USER }, (event) => {
      if (event.event === 'status' && (event.data.data as { status?: string }).status === 'running') runningAt ??= performance.now();
      return false;
    });
    const ended = events.at(-1)?.data.data as { status?: string } | undefined;
    correct &&= runningAt !== undefined && ended?.status === 'succeeded';
    if (runningAt !== undefined) times.push(runningAt - started);
  }
  return { times, correct };
}
