import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { FakeAnthropic } from '../fixtures/fake-anthropic.js';
import { startCloudFakes } from '../sim/cloud-fakes.js';
import { firestoreEmulatorUnavailable } from '../support/firestore-emulator.js';
import { freePort, prompt, startService } from '../support/service.js';
import type { CloudFakes } from '../sim/cloud-fakes.js';
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
  const service = await startService(
    { ...fakes.apiEnv(port), ANTHROPIC_API_KEY: fake.apiKey, ANTHROPIC_BASE_URL: fake.url },
    path.join(dataDir, 'api'),
  );
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
      line(
        label,
        `${ms(took).trim()}: runJob ${delta('runJob')}, getExecution ${delta('getExecution')}, cancelExecution ${delta('cancelExecution')}`,
      );
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
    if (!(await startsAtTheQuota(fakes, fake, dataDir))) correct = false;
  } finally {
    firestoreOps.stop();
    await service.stop();
    await fakes.close();
    await rm(dataDir, { recursive: true, force: true });
  }
  return correct;
}

/** How many prompts at once, and the service's sandbox starts per minute, for the quota figure. */
const BURST = 30;
const STARTS_PER_MINUTE = 10;

/**
 * runJob calls when prompts come faster than the service's start limit (CLAUDERUN_RUNJOBS_PER_MINUTE):
 * BURST users prompt at once; only the limit's worth reach Cloud Run, the rest are told when to retry.
 */
async function startsAtTheQuota(fakes: CloudFakes, fake: FakeAnthropic, dataDir: string): Promise<boolean> {
  const port = await freePort();
  const env = fakes.apiEnv(port);
  // A store of its own: the window counts every start of the service, the turns above included.
  const service = await startService(
    {
      ...env,
      GOOGLE_CLOUD_PROJECT: `${env.GOOGLE_CLOUD_PROJECT ?? 'sim'}-quota`,
      ANTHROPIC_API_KEY: fake.apiKey,
      ANTHROPIC_BASE_URL: fake.url,
      CLAUDERUN_RUNJOBS_PER_MINUTE: String(STARTS_PER_MINUTE),
    },
    path.join(dataDir, 'quota'),
  );
  try {
    const before = fakes.cloudRun.calls.runJob ?? 0;
    const answers = await Promise.all(
      Array.from({ length: BURST }, (_, i) => prompt(service, `burst-${i}`, { message: 'hello' }, { prefer: 'respond-async' })),
    );
    const started = answers.filter((a) => a.status === 202).length;
    const refused = answers.filter(
      (a) => a.status === 429 && (a.body.error as { details?: { limit?: string } }).details?.limit === 'sandbox_starts_per_minute',
    );
    const waits = refused.map((a) => Number((a.body.error as { details: { retryAfterSeconds: number } }).details.retryAfterSeconds));
    const runJobs = (fakes.cloudRun.calls.runJob ?? 0) - before;
    line(
      `burst of ${BURST}`,
      `${BURST} users at once, limit ${STARTS_PER_MINUTE}/min: ${started} started (runJob ${runJobs}), ${refused.length} refused 429 sandbox_starts_per_minute (Retry-After ${Math.min(...waits)}-${Math.max(...waits)} s)`,
    );
    // Let the started turns end before the service stops.
    await new Promise((resolve) => setTimeout(resolve, 5000));
    return started === STARTS_PER_MINUTE && runJobs === STARTS_PER_MINUTE && refused.length === BURST - STARTS_PER_MINUTE;
  } finally {
    await service.stop();
  }
}
