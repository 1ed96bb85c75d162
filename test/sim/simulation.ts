import { randomBytes } from 'node:crypto';
import type { Env } from '../../functions/src/config.js';
import { startFakeMetadataServer, type FakeMetadataServer } from '../fixtures/fake-metadata-server.js';
import { startFakeVertex, type FakeVertex } from '../fixtures/fake-vertex.js';
import { startCloudFakes, type CloudFakes, type CloudRunBehaviour } from './cloud-fakes.js';
import { CLAUDERUN_SOURCE, startPlatform, type FunctionSettings, type Platform } from './platform/index.js';
import type { InstancePool } from './platform/pool.js';
import { startGoogleIdTokens, startScheduler, type FakeScheduler, type GoogleIdTokens } from './platform/scheduler.js';

/**
 * clauderun deployed on the simulated platform: the API as Cloud Functions runs it (instances
 * that are processes of their own, behind Google's front end), against the Firestore emulator,
 * the fake Cloud Storage and the fake Cloud Run Admin API, with Cloud Scheduler calling the
 * sweeper. What `npm run sim` runs, and what the tests of the cloud path run against.
 */

/**
 * How the API is deployed: `split` as infra/ deploys it, the public routes and the runner's routes
 * as two functions of the same source (CLAUDERUN_SERVE=public and runner); or `one` function
 * serving every route.
 */
export type Layout = 'one' | 'split';
/** Which of a function's two URLs the sandboxes are given. */
export type SandboxUrl = 'prefixed' | 'root';

export type InstanceBehaviour = Pick<FunctionSettings, 'maxInstances' | 'concurrency' | 'timeoutSeconds' | 'pendingTimeoutMs' | 'idleStopMs'>;

export interface SimulationOptions {
  dataDir: string;
  log: (message: string) => void;
  /** Settings every function gets besides the platform's: the model key, limits, CLAUDERUN_*. */
  env?: Env;
  /** Default `split`, as deployed. */
  layout?: Layout;
  /**
   * Default 'root': the deployment gives sandboxes an internal load balancer's root URL, which
   * reaches the runner function alone. 'prefixed' (https://REGION-PROJECT.cloudfunctions.net/NAME)
   * is the hardest case for the runner's URLs, but a sandbox given it reaches the shared origin,
   * every function on it (as an egress rule allowing cloudfunctions.net would), the public one too.
   */
  sandboxUrl?: SandboxUrl;
  cloudRun?: CloudRunBehaviour;
  instances?: InstanceBehaviour;
  /** Settings of one function only, over `env` (by function name). */
  functionEnv?: Record<string, Env>;
  /** The sweeper's schedule; 0 pauses it (runNow still runs it). Default 60 s, Cloud Scheduler's shortest cron period. */
  sweepEverySeconds?: number;
  /** The cloudfunctions.net-style origin's port (0: any free one). */
  port?: number;
}

export interface Simulation {
  /** The public function's URL, as the deployment exports it (cloudfunctions.net-style, prefixed). */
  url: string;
  /** The public function's run.app-style URL (no prefix). */
  rootUrl: string;
  /** The URL sandboxes are given (CLAUDERUN_API_URL). */
  sandboxApiUrl: string;
  publicPool: InstancePool;
  /** The runner's function's instances (the public pool itself with one function). */
  runnerPool: InstancePool;
  platform: Platform;
  fakes: CloudFakes;
  tokens: GoogleIdTokens;
  scheduler: FakeScheduler;
  /** The scheduler job's service account (CLAUDERUN_SWEEPER_ACCOUNT). */
  sweeperAccount: string;
  /** With CLAUDERUN_MODEL_UPSTREAM=vertex: the Vertex AI stand-in and the metadata server whose tokens it takes. */
  vertex: { api: FakeVertex; metadata: FakeMetadataServer } | undefined;
  close(): Promise<void>;
}

/** The deployment's names (infra/config.ts names()): a function's name is its URL's path. */
export const PUBLIC_FUNCTION = 'clauderun-api';
export const RUNNER_FUNCTION = 'clauderun-runner';
/** infra/api-function.ts: a turn's synchronous POST outlasts the turn by a minute. */
const REQUEST_TIMEOUT_OVER_TURN_SECONDS = 60;
const DEFAULT_TURN_TIMEOUT_SECONDS = 600;

export async function startSimulation(options: SimulationOptions): Promise<Simulation> {
  const layout = options.layout ?? 'split';
  const names = layout === 'split' ? [PUBLIC_FUNCTION, RUNNER_FUNCTION] : [PUBLIC_FUNCTION];
  const closers: Array<() => Promise<void> | void> = [];
  const closeAll = async () => {
    for (const close of closers.reverse()) await close();
  };
  try {
    const fakes = await startCloudFakes({ dataDir: options.dataDir, log: options.log, cloudRun: options.cloudRun ?? {} });
    closers.push(() => fakes.close());
    const tokens = await startGoogleIdTokens();
    closers.push(() => tokens.close());
    const platform = await startPlatform({ names, dataDir: options.dataDir, log: options.log, port: options.port ?? 0 });
    closers.push(() => platform.close());

    const runnerName = layout === 'split' ? RUNNER_FUNCTION : PUBLIC_FUNCTION;
    const sandboxApiUrl = (options.sandboxUrl ?? 'root') === 'prefixed' ? platform.prefixedUrl(runnerName) : platform.rootUrl(runnerName);
    // As infra/sweeper.ts: the job POSTs to the public URL's /ops/sweep, its token's audience the public URL.
    const sweepAudience = platform.prefixedUrl(PUBLIC_FUNCTION);
    const sweepUrl = `${sweepAudience}/ops/sweep`;
    const { PORT: _port, ...cloudEnv } = fakes.apiEnv(0, sandboxApiUrl);
    // The scheduler job's own service account (Pulumi creates it), not the API's.
    const sweeper = `clauderun-sweeper@${cloudEnv.GOOGLE_CLOUD_PROJECT ?? 'sim'}.iam.gserviceaccount.com`;
    const vertex =
      options.env?.CLAUDERUN_MODEL_UPSTREAM === 'vertex' ? await startVertex(options.env, cloudEnv.GOOGLE_CLOUD_PROJECT ?? 'sim') : undefined;
    if (vertex !== undefined) closers.push(() => vertex.close());
    const env: Record<string, string> = {
      ...defined(cloudEnv),
      // Secret Manager gives every instance the same secret; a generated one would differ per instance.
      CLAUDERUN_TOKEN_SECRET: randomBytes(32).toString('hex'),
      CLAUDERUN_GOOGLE_JWKS_URL: tokens.jwksUrl,
      ...vertex?.env,
      ...defined(options.env ?? {}),
    };
    // K_SERVICE is set on the platform, where header auth and the egress test mapping refuse to
    // start: the simulation is the one place they are wanted there, as the tests' way of naming
    // a user and of standing in for an allowed host.
    env.CLAUDERUN_TEST_SETTINGS_IN_CLOUD = 'true';
    const turnTimeout = Number(env.CLAUDERUN_TURN_TIMEOUT_SECONDS ?? DEFAULT_TURN_TIMEOUT_SECONDS);
    // infra/api-function.ts: 80 requests per instance, 10 instances by default.
    // Only the function serving the public routes takes the sweeper's calls (infra/function-roles.ts).
    const sweeperEnv = { CLAUDERUN_SWEEPER_ACCOUNT: sweeper, CLAUDERUN_SWEEPER_AUDIENCE: sweepAudience };
    const deployed = (name: string, serve: string): FunctionSettings => ({
      name,
      source: CLAUDERUN_SOURCE,
      env: { ...env, ...(serve === 'runner' ? {} : sweeperEnv), CLAUDERUN_SERVE: serve, ...defined(options.functionEnv?.[name] ?? {}) },
      maxInstances: 10,
      concurrency: 80,
      timeoutSeconds: Math.min(3600, turnTimeout + REQUEST_TIMEOUT_OVER_TURN_SECONDS),
      ...options.instances,
    });
    const publicPool = platform.deploy(deployed(PUBLIC_FUNCTION, layout === 'split' ? 'public' : 'all'));
    const runnerPool = layout === 'split' ? platform.deploy(deployed(RUNNER_FUNCTION, 'runner')) : publicPool;

    const scheduler = startScheduler(
      tokens,
      { url: sweepUrl, audience: sweepAudience, account: sweeper, everySeconds: options.sweepEverySeconds ?? 60 },
      options.log,
    );
    closers.push(() => scheduler.close());
    return {
      url: platform.prefixedUrl(PUBLIC_FUNCTION),
      rootUrl: platform.rootUrl(PUBLIC_FUNCTION),
      sandboxApiUrl,
      publicPool,
      runnerPool,
      platform,
      fakes,
      tokens,
      scheduler,
      sweeperAccount: sweeper,
      vertex: vertex === undefined ? undefined : { api: vertex.api, metadata: vertex.metadata },
      close: closeAll,
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}

/**
 * Claude on Vertex AI for functions configured for it: the Vertex AI stand-in, in the sim's
 * project and the configured region (default `global`, as deployed), and the platform's metadata
 * server, which every instance reaches at GCE_METADATA_HOST. There, with K_SERVICE set and no
 * key file or gcloud configuration in its environment, google-auth-library takes the service
 * account's tokens from it, as on Cloud Run. A CLAUDERUN_VERTEX_ENDPOINT given is kept.
 */
async function startVertex(given: Env, simProject: string) {
  const project = given.CLAUDERUN_VERTEX_PROJECT ?? simProject;
  const region = given.CLAUDERUN_VERTEX_REGION ?? 'global';
  const metadata = await startFakeMetadataServer({ projectId: simProject });
  const api = await startFakeVertex({ tokens: metadata, project, region });
  return {
    api,
    metadata,
    env: { CLAUDERUN_VERTEX_PROJECT: project, CLAUDERUN_VERTEX_REGION: region, CLAUDERUN_VERTEX_ENDPOINT: api.url, GCE_METADATA_HOST: metadata.host },
    close: async () => {
      await api.close();
      await metadata.close();
    },
  };
}

function defined(env: Env): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined));
}
