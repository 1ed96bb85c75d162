import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { FakeAnthropic } from '../fixtures/fake-anthropic.js';
import { startSimulation } from '../sim/simulation.js';
import { firestoreEmulatorUnavailable } from '../support/firestore-emulator.js';
import { linkPath, prompt } from '../support/service.js';
import { readEvents } from '../support/sse.js';
import { line, ms } from './report.js';
import { summarize } from './stats.js';

/**
 * Time to running on the simulated platform (issue 17's figure, before any warm pool): from the
 * POST of a prompt to its turn's `running` event at an SSE client, with every Cloud Run execution
 * starting after a realistic delay. Google publishes no start time for an execution; 8-9 s are
 * reported for small images (the fake Cloud Run's notes), so the sim is given 8 s here.
 */

const START_DELAY_MS = 8000;
const USER = 'bench-time-to-running';

export async function timeToRunning(fake: FakeAnthropic, runs: number): Promise<boolean> {
  console.log(`\ntime to running on the simulated platform: ${runs} turns, each execution starting ${START_DELAY_MS / 1000} s after runJob`);
  const unavailable = firestoreEmulatorUnavailable();
  if (unavailable !== undefined) {
    line('skipped', `no Firestore emulator (${unavailable})`);
    return true;
  }
  const dataDir = await mkdtemp(path.join(tmpdir(), 'clauderun-bench-running-'));
  let correct = true;
  try {
    const sim = await startSimulation({
      dataDir,
      log: () => {},
      env: { ANTHROPIC_API_KEY: fake.apiKey, ANTHROPIC_BASE_URL: fake.url },
      cloudRun: { startDelayMs: START_DELAY_MS },
      sweepEverySeconds: 0,
    });
    try {
      const client = { url: sim.rootUrl };
      const times: number[] = [];
      for (let i = 0; i < runs; i++) {
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
      const s = summarize(times);
      line('time to running', `cold${ms(s.median)} median, p90${ms(s.p90)}  (warm: no pool yet; target warm under 1 s)`);
    } finally {
      await sim.close();
    }
    return correct;
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
}
