import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { FakeAnthropic } from '../fixtures/fake-anthropic.js';
import { startCloudFakes } from '../sim/cloud-fakes.js';
import { firestoreEmulatorUnavailable } from '../support/firestore-emulator.js';
import { freePort, prompt, startService } from '../support/service.js';
import { FirestoreOpsCounter } from './firestore-ops.js';
import { line, ms } from './report.js';

/**
 * Cloud Run Admin API calls and Firestore operations per turn on the production path (`npm run
 * sim`'s set-up: the fake Admin API, the Firestore emulator): a quick turn and one that lasts
 * about ten seconds. Targets: one runJob plus the polls of a 10 s turn; at most 8 Firestore
 * operations.
 */
export async function cloudRunCalls(fake: FakeAnthropic): Promise<boolean> {
  console.log('\nCloud Run API calls per turn (the production path on one machine)');
  const unavailable = firestoreEmulatorUnavailable();
  if (unavailable !== undefined) {
    line('skipped', `no Firestore emulator (${unavailable})`);
    return true;
  }
  const dataDir = await mkdtemp(path.join(tmpdir(), 'clauderun-bench-cloud-'));
  const fakes = await startCloudFakes({ dataDir, log: () => {} });
  const port = await freePort();
  const firestoreOps = new FirestoreOpsCounter();
  firestoreOps.start();
  const service = await startService({ ...fakes.apiEnv(port), ANTHROPIC_API_KEY: fake.apiKey, ANTHROPIC_BASE_URL: fake.url }, path.join(dataDir, 'api'));
  let correct = true;
  try {
    for (const [label, message] of [
      ['quick turn', 'hello'],
      ['10 s turn', 'bash: node -e "setTimeout(() => console.log(\'slept\'), 10000)"'],
    ] as const) {
      const before = { ...fakes.cloudRun.calls };
      firestoreOps.reset();
      const started = performance.now();
      const answer = await prompt(service, 'bench-cloud', { message });
      const took = performance.now() - started;
      if (answer.status !== 200) {
        line(label, `FAILED: HTTP ${answer.status} ${JSON.stringify(answer.body).slice(0, 200)}`);
        correct = false;
        continue;
      }
      // The execution ends a moment after the answer; its last poll belongs to this turn.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const delta = (name: string) => (fakes.cloudRun.calls[name] ?? 0) - (before[name] ?? 0);
      line(label, `${ms(took).trim()}: runJob ${delta('runJob')}, getExecution ${delta('getExecution')}, cancelExecution ${delta('cancelExecution')}`);
      const ops = firestoreOps.snapshot();
      const { lookups, queries, listeners, commits } = ops.byKind;
      line(
        '',
        `Firestore: ${ops.reads + ops.writes} operations (${ops.reads} reads: ${lookups} lookups, ${queries} query, ${listeners} listener; ` +
          `${ops.writes} writes in ${commits} commits)`,
      );
      if (delta('runJob') !== 1) correct = false;
    }
    line('target', 'at most 1 runJob plus the polls of a 10 s turn (polls back off 1, 2, 4, 8 s ...); at most 8 Firestore operations');
  } finally {
    firestoreOps.stop();
    await service.stop();
    await fakes.close();
    await rm(dataDir, { recursive: true, force: true });
  }
  return correct;
}
