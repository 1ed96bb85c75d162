import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Env } from '../../functions/src/config.js';
import { loadConfig } from '../../functions/src/config.js';
import { forwardToPort } from '../../functions/src/sandbox/local/api-bridge.js';
import { createLocalLauncher, diskLimitsOf } from '../../functions/src/sandbox/local/index.js';
import { startFakeCloudRun, type FakeCloudRun, type FakeCloudRunOptions } from '../fixtures/fake-cloud-run.js';
import { startFakeGcs, type FakeGcs } from '../fixtures/fake-gcs.js';
import { startFirestoreEmulator, type FirestoreEmulator } from '../support/firestore-emulator.js';

/**
 * Google Cloud on one machine: the official Firestore emulator, a fake Cloud Storage and a fake
 * Cloud Run Admin API whose executions run in the local sandbox. `apiEnv` gives an API instance
 * the environment it would have in the cloud, pointed at these.
 */
export interface CloudFakes {
  firestore: FirestoreEmulator;
  storage: FakeGcs;
  cloudRun: FakeCloudRun;
  /** Everything an API instance on `port` needs, sandboxes calling it back at `apiUrl`. */
  apiEnv(port: number, apiUrl?: string): Env;
  close(): Promise<void>;
}

/** The Admin API's platform behaviours (start delay, runJob quota, retention): see FakeCloudRunOptions. */
export type CloudRunBehaviour = Pick<FakeCloudRunOptions, 'startDelayMs' | 'runsPerMinute' | 'retainedExecutions'>;

export async function startCloudFakes(options: {
  dataDir: string;
  log: (message: string) => void;
  cloudRun?: CloudRunBehaviour;
}): Promise<CloudFakes> {
  const firestore = await startFirestoreEmulator();
  if (firestore === undefined) {
    throw new Error('no Firestore emulator: set FIRESTORE_EMULATOR_HOST or install the gcloud Firestore emulator and java');
  }
  const storage = await startFakeGcs();
  const cloudRun = await startSandboxedCloudRun(options);
  // A project of its own per run: the emulator keeps projects apart, so runs never meet.
  const projectId = `clauderun-sim-${randomBytes(4).toString('hex')}`;
  return {
    firestore,
    storage,
    cloudRun,
    apiEnv: (port, apiUrl = `http://127.0.0.1:${port}`) => ({
      PORT: String(port),
      CLAUDERUN_STORE: 'firestore',
      GOOGLE_CLOUD_PROJECT: projectId,
      FIRESTORE_EMULATOR_HOST: firestore.host,
      CLAUDERUN_BLOBS: 'gcs',
      CLAUDERUN_GCS_BUCKET: 'clauderun-state',
      CLAUDERUN_GCS_ENDPOINT: storage.url,
      CLAUDERUN_SANDBOX: 'cloudrun',
      CLAUDERUN_CLOUDRUN_JOB: `projects/${projectId}/locations/local/jobs/sandbox`,
      CLAUDERUN_CLOUDRUN_ENDPOINT: `http://${cloudRun.host}:${cloudRun.port}`,
      CLAUDERUN_API_URL: apiUrl,
    }),
    close: async () => {
      await cloudRun.close();
      await storage.close();
      await firestore.stop();
    },
  };
}

/**
 * A fake Cloud Run Admin API whose executions run in the local sandbox, with the default limits.
 * A sandbox reaches the loopback port of its API_URL, and sees that URL's path as the deployed
 * job would (a function's URL is https://REGION-PROJECT.cloudfunctions.net/NAME).
 */
export function startSandboxedCloudRun(options: {
  dataDir: string;
  log: (message: string) => void;
  cloudRun?: CloudRunBehaviour;
}): Promise<FakeCloudRun> {
  const limits = loadConfig({}).limits;
  let launchers = 0;
  return startFakeCloudRun({
    ...options.cloudRun,
    sandboxFor: (apiUrl) =>
      createLocalLauncher({
        // A directory per launcher: each clears its own at start.
        dataDir: path.join(options.dataDir, `executions-${++launchers}`),
        connectApi: forwardToPort(Number(apiUrl.port)),
        apiPath: apiUrl.pathname.replace(/\/+$/, ''),
        limits: { memoryBytes: limits.memoryMb * 1024 * 1024, cpus: limits.cpus, pids: limits.pids },
        disk: diskLimitsOf(limits),
        systemPath: '/usr/local/bin:/usr/bin:/bin',
        log: options.log,
      }),
  });
}
