import { randomUUID } from 'node:crypto';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { loadConfig } from '../../functions/src/config.js';
import { openCgroups, type SandboxCgroup } from '../../functions/src/sandbox/local/cgroups.js';
import { startFakeAnthropic, type FakeAnthropic } from '../fixtures/fake-anthropic.js';
import { prompt, startService, type RunningService } from '../support/service.js';
import { bareRun, cliVersion } from './bare-cli.js';
import { cloudRunCalls } from './cloud-calls.js';
import { egressCost } from './egress.js';
import { workspaceFiles } from './files.js';
import { eventStreamsMemory, listLatency } from './conversations.js';
import { platformColdStart } from './platform.js';
import { streamingLatency } from './streaming.js';
import { timeToRunning } from './time-to-running.js';
import { warmIdleCost } from './warm-idle.js';
import { line, ms } from './report.js';
import { summarize, type Summary } from './stats.js';

/**
 * `npm run bench`: how much a turn through clauderun (HTTP, store, bwrap sandbox, cgroups, model
 * proxy) costs over running the same Claude Code CLI bare, and whether concurrent users each get
 * their own answer. Both sides talk to the same local fake Anthropic API, so model latency is
 * near zero and what is measured is our overhead plus the CLI's own start-up. Then what the
 * service holds for many watchers of one turn, and how fast it lists a user's many conversations
 * (conversations.ts).
 */

/** Issue 17's target: a turn through the service with a warm pool, against the bare CLI under the same limits. */
const WARM_RATIO_TARGET = 1.05;
const PROMPT = 'hello';

function countFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive whole number, got "${raw}"`);
  return n;
}

const statsRow = (label: string, s: Summary) => line(label, `${ms(s.median)}${ms(s.p90)}${ms(s.min)}`);

/** One sequential service turn, timed as a client sees it; throws unless it echoed the prompt. */
async function serviceRun(service: RunningService, userId: string): Promise<number> {
  const started = performance.now();
  const answer = await prompt(service, userId, { message: PROMPT });
  const elapsed = performance.now() - started;
  if (answer.status !== 200 || answer.body.status !== 'succeeded' || answer.body.text !== `echo: ${PROMPT}`) {
    throw new Error(`service turn failed (HTTP ${answer.status}): ${JSON.stringify(answer.body)}`);
  }
  return elapsed;
}

/**
 * Turns one after the other through the service with its warm pool (the default), through a
 * service without one, and through the bare CLI with and without the sandbox's limits, interleaved.
 */
async function sequential(warm: RunningService, cold: RunningService, fake: FakeAnthropic, runs: number, limited: SandboxCgroup): Promise<void> {
  console.log(`\nsequential turns: ${runs} each, interleaved, after 1 warm-up of each`);
  // The warm-ups fill the page cache with the CLI binary and let the services open their stores, so
  // that the first measured run of any kind is not paying a one-off cost the others did not.
  await serviceRun(warm, 'bench-warmup');
  await serviceRun(cold, 'bench-warmup');
  await bareRun(fake, PROMPT);
  await bareRun(fake, PROMPT, limited);

  // Alternating the kinds of run spreads any background load (another test run, a noisy
  // neighbour) over every column instead of skewing whichever happened to run during it.
  const warmMs: number[] = [];
  const coldMs: number[] = [];
  const bareMs: number[] = [];
  const limitedMs: number[] = [];
  for (let i = 0; i < runs; i++) {
    // No conversationId: each turn starts a new conversation, like the bare run's fresh HOME.
    // The pool is refilled while the other kinds run, as it would be between a user's prompts.
    warmMs.push(await serviceRun(warm, 'bench-sequential'));
    coldMs.push(await serviceRun(cold, 'bench-sequential'));
    bareMs.push(await bareRun(fake, PROMPT));
    limitedMs.push(await bareRun(fake, PROMPT, limited));
  }

  const w = summarize(warmMs);
  const c = summarize(coldMs);
  const b = summarize(bareMs);
  const l = summarize(limitedMs);
  const over = (s: Summary, base: Summary) => ((s.median - base.median) / base.median) * 100;
  line('', `${'median'.padStart(9)}${'p90'.padStart(9)}${'min'.padStart(9)}`);
  statsRow('service, warm pool', w);
  statsRow('service, no pool', c);
  statsRow('bare CLI, 1 CPU', l);
  statsRow('bare CLI, no limit', b);
  // The sandbox's 1 vCPU is a product limit, not service overhead: compare like with like, and
  // show the cost of the limit itself beside it.
  line('overhead', `warm pool: ${over(w, l).toFixed(1)}% over the bare CLI with the same limits (ratio ${(w.median / l.median).toFixed(2)}x)`);
  line('', `no pool: ${over(c, l).toFixed(1)}% over it (ratio ${(c.median / l.median).toFixed(2)}x)`);
  line('', `the 1-CPU limit alone: ${over(l, b).toFixed(1)}% over the bare CLI with no limits`);
  const met = w.median / l.median <= WARM_RATIO_TARGET;
  line('target', `with the pool, at most ${WARM_RATIO_TARGET.toFixed(2)}x a bare CLI run under the same limits: ${met ? 'MET' : 'NOT MET'}`);
  await warmIdleCost(warm);
}

interface Outcome {
  i: number;
  ms: number;
  status: number;
  body?: Record<string, unknown>;
  error?: string;
}

/** Returns true when every concurrent turn succeeded with its own user's answer. */
async function concurrent(service: RunningService, users: number): Promise<boolean> {
  console.log(`\nconcurrent turns: ${users} users at once`);
  // A unique prompt per user: an answer carrying someone else's prompt shows a mix-up, which a
  // shared "hello" would hide.
  const prompts = Array.from({ length: users }, (_, i) => `concurrent user ${i} ${randomUUID()}`);
  const started = performance.now();
  const results = await Promise.all(
    prompts.map(async (message, i): Promise<Outcome> => {
      const t0 = performance.now();
      try {
        const answer = await prompt(service, `bench-user-${i}`, { message });
        return { i, ms: performance.now() - t0, status: answer.status, body: answer.body };
      } catch (error) {
        // A refused connection or a non-JSON body must count as a failed turn, not end the run.
        return { i, ms: performance.now() - t0, status: 0, error: String(error) };
      }
    }),
  );
  const wall = performance.now() - started;

  let ok = 0;
  for (const r of results) {
    const own = `echo: ${prompts[r.i]}`;
    if (r.status === 200 && r.body?.status === 'succeeded' && r.body.text === own) {
      ok++;
      continue;
    }
    const other = prompts.findIndex((p, j) => j !== r.i && r.body?.text === `echo: ${p}`);
    const why = other >= 0 ? `got user ${other}'s answer` : (r.error ?? `HTTP ${r.status} ${JSON.stringify(r.body)}`);
    line(`FAILED user ${r.i}`, why.slice(0, 300));
  }
  const latency = summarize(results.map((r) => r.ms));
  line('succeeded', `${ok}/${users}`);
  line('wall time', ms(wall).trim());
  line('per-turn latency', `median ${ms(latency.median).trim()}, max ${ms(latency.max).trim()}`);
  return ok === users;
}

/** `npm run bench -- cloud list` runs only the sections named; no names runs them all. */
const SECTIONS = ['latency', 'concurrent', 'streams', 'list', 'cloud', 'platform', 'egress', 'files', 'streaming', 'running'] as const;
type Section = (typeof SECTIONS)[number];

function chosenSections(args: string[]): Set<Section> {
  const unknown = args.filter((arg) => !(SECTIONS as readonly string[]).includes(arg));
  if (unknown.length > 0) throw new Error(`unknown bench section(s) ${unknown.join(', ')}; choose from ${SECTIONS.join(', ')}`);
  return new Set(args.length === 0 ? SECTIONS : (args as Section[]));
}

async function main(): Promise<number> {
  const sections = chosenSections(process.argv.slice(2));
  const runs = countFromEnv('BENCH_RUNS', 10);
  const users = countFromEnv('BENCH_CONCURRENT', 10);
  const streams = countFromEnv('BENCH_STREAMS', 1000);
  const stored = countFromEnv('BENCH_CONVERSATIONS', 10_000);

  console.log('clauderun benchmark');
  line('node', process.version);
  line('cpus', String(os.cpus().length));
  line('memory', `${(os.totalmem() / 1024 ** 3).toFixed(1)} GiB`);
  line('claude CLI', await cliVersion());

  let fake: FakeAnthropic | undefined;
  let service: RunningService | undefined;
  let limited: SandboxCgroup | undefined;
  try {
    fake = await startFakeAnthropic();
    service = await startService({ ANTHROPIC_API_KEY: fake.apiKey, ANTHROPIC_BASE_URL: fake.url });
    // The same kernel limits a sandbox gets (1 CPU, 1 GiB, 256 pids), for the like-with-like baseline.
    const config = loadConfig({});
    limited = await (await openCgroups()).create(`bench-bare-${process.pid}`, {
      memoryBytes: config.limits.memoryMb * 1024 * 1024,
      cpus: config.limits.cpus,
      pids: config.limits.pids,
    });
    if (sections.has('latency')) {
      const cold = await startService({ ANTHROPIC_API_KEY: fake.apiKey, ANTHROPIC_BASE_URL: fake.url, CLAUDERUN_WARM_SANDBOXES: '0' });
      try {
        await sequential(service, cold, fake, runs, limited);
      } finally {
        await cold.stop({ removeData: true });
      }
    }
    const correct = sections.has('concurrent') ? await concurrent(service, users) : true;
    // Each runs its own service process, so that what it measures is that process alone.
    const streamsCorrect = sections.has('streams') ? await eventStreamsMemory(fake, streams) : true;
    const listCorrect = sections.has('list') ? await listLatency(fake, stored) : true;
    const cloudCorrect = sections.has('cloud') ? await cloudRunCalls(fake) : true;
    const platformCorrect = sections.has('platform') ? await platformColdStart(fake, runs) : true;
    const egressCorrect = sections.has('egress') ? await egressCost(fake, runs) : true;
    const filesCorrect = sections.has('files') ? await workspaceFiles(fake) : true;
    const streamingCorrect = sections.has('streaming') ? await streamingLatency(fake, runs) : true;
    const runningCorrect = sections.has('running') ? await timeToRunning(fake, Math.min(runs, 5)) : true;
    // A missed speed target is only reported; a lost or mixed-up answer is a failure.
    const allCorrect = [
      correct,
      streamsCorrect,
      listCorrect,
      cloudCorrect,
      platformCorrect,
      egressCorrect,
      filesCorrect,
      streamingCorrect,
      runningCorrect,
    ];
    return allCorrect.every(Boolean) ? 0 : 1;
  } finally {
    await service?.stop({ removeData: true });
    await fake?.close();
    await limited?.remove();
  }
}

try {
  process.exitCode = await main();
} catch (error) {
  console.error(`\nbenchmark failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
}
