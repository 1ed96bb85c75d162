import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { startSimulation, type Layout, type SandboxUrl } from './simulation.js';

/**
 * `npm run sim`: the production path on one machine, on a simulation of the platform it runs on.
 * The API runs as Cloud Functions runs it (the Functions Framework's own server, instances that
 * are processes of their own, frozen between requests, started and stopped on demand) behind a
 * stand-in for Google's front end, with the Firestore store, the Cloud Storage blob store and
 * the Cloud Run launcher against the official Firestore emulator (or FIRESTORE_EMULATOR_HOST), a
 * fake Cloud Storage and a fake Cloud Run Admin API that runs each execution in the local sandbox.
 *
 * PORT (8080) is the cloudfunctions.net-style origin: the API is http://127.0.0.1:PORT/clauderun-api,
 * as https://REGION-PROJECT.cloudfunctions.net/clauderun-api. ANTHROPIC_* and CLAUDERUN_* settings go
 * to the function as its environment; CLAUDERUN_SIM_* settings are the platform's (README). With
 * CLAUDERUN_MODEL_UPSTREAM=vertex the functions call a stand-in for Claude on Vertex AI with tokens
 * from a stand-in for the metadata server, and need no model key.
 */
const log = (message: string) => console.error(`clauderun-sim: ${message}`);
const env = process.env;

function whole(name: string, fallback: number): number {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a whole number, got "${raw}"`);
  return n;
}

function oneOf<T extends string>(name: string, values: readonly T[], fallback: T): T {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === '') return fallback;
  if (!(values as readonly string[]).includes(raw)) throw new Error(`${name} must be one of: ${values.join(', ')}; got "${raw}"`);
  return raw as T;
}

const dataDir = path.resolve(env.CLAUDERUN_DATA_DIR ?? '.clauderun-sim');
mkdirSync(dataDir, { recursive: true });
// What the function is configured with: the settings a deployment would give it, nothing of this shell.
const functionEnv = Object.fromEntries(
  Object.entries(env).filter(
    ([name]) =>
      (name.startsWith('CLAUDERUN_') || name.startsWith('ANTHROPIC_')) && !name.startsWith('CLAUDERUN_SIM_') && name !== 'CLAUDERUN_DATA_DIR',
  ),
);
const sim = await startSimulation({
  dataDir,
  log,
  env: functionEnv,
  port: whole('PORT', 8080),
  layout: oneOf<Layout>('CLAUDERUN_SIM_LAYOUT', ['split', 'one'], 'split'),
  sandboxUrl: oneOf<SandboxUrl>('CLAUDERUN_SIM_SANDBOX_URL', ['prefixed', 'root'], 'root'),
  cloudRun: {
    startDelayMs: whole('CLAUDERUN_SIM_START_DELAY_MS', 3000),
    runsPerMinute: whole('CLAUDERUN_SIM_RUNS_PER_MINUTE', 60),
    retainedExecutions: whole('CLAUDERUN_SIM_RETAINED_EXECUTIONS', 1000),
  },
  instances: {
    maxInstances: whole('CLAUDERUN_SIM_MAX_INSTANCES', 10),
    concurrency: whole('CLAUDERUN_SIM_CONCURRENCY', 80),
    idleStopMs: whole('CLAUDERUN_SIM_IDLE_SECONDS', 15 * 60) * 1000,
    pendingTimeoutMs: whole('CLAUDERUN_SIM_PENDING_SECONDS', 30) * 1000,
  },
  sweepEverySeconds: whole('CLAUDERUN_SIM_SWEEP_SECONDS', 60),
});
log(
  `Firestore emulator ${sim.fakes.firestore.host}, fake Cloud Storage ${sim.fakes.storage.url}, fake Cloud Run http://${sim.fakes.cloudRun.host}:${sim.fakes.cloudRun.port}`,
);
if (sim.vertex !== undefined) log(`fake Vertex AI ${sim.vertex.api.url}, fake metadata server http://${sim.vertex.metadata.host}`);
log(`sandboxes call ${sim.sandboxApiUrl}`);
log(`listening on ${sim.url} (also ${sim.rootUrl})`);
const stop = (signal: string) => {
  log(`${signal}: stopping`);
  sim.close().then(
    () => process.exit(0),
    (error: unknown) => {
      log(`stopping failed: ${(error as Error).stack ?? String(error)}`);
      process.exit(1);
    },
  );
};
process.once('SIGINT', stop).once('SIGTERM', stop);
