import * as pulumi from '@pulumi/pulumi';
import type { SettingName } from '../functions/src/config.js';
import type { Names, Settings } from './config.js';

/**
 * The two functions deployed from the one source: what each serves (CLAUDERUN_SERVE), who may
 * reach it, what it is sized for, and its plain environment. Pure: the tests read these tables
 * directly and through the program.
 *
 * - public (`clauderun-api`): /api/*, the web page, /healthz and the sweeper's route. Ingress from
 *   anywhere; its requests mostly wait (a held POST, SSE), so one instance serves many.
 * - runner (`clauderun-runner`): /internal/turns/* and the model proxy /internal/model/*. Ingress
 *   "internal" only: requests from the internal Application Load Balancer in front of it (and from
 *   VPC networks of this project) get in, the internet does not
 *   (cloud.google.com/run/docs/securing/ingress, "Internal"). "Internal and Cloud Load Balancing"
 *   would also let in any external Application Load Balancer someone adds to the project; the
 *   internal one counts as internal already
 *   (cloud.google.com/load-balancing/docs/l7-internal/setting-up-l7-internal-serverless).
 *   Sandboxes hold no Google identity, so anyone who gets in may invoke it; the turn token
 *   authenticates every route.
 */

export type Serve = 'public' | 'runner';
export type Ingress = 'ALLOW_ALL' | 'ALLOW_INTERNAL_ONLY';

export interface FunctionRole {
  serve: Serve;
  ingress: Ingress;
  /** Cloud Functions' `availableMemory`. */
  memory: string;
  cpu: string;
  /** Requests one instance takes at once. */
  concurrency: number;
  maxInstances: number;
  timeoutSeconds: number;
  /**
   * Whether the function calls the model (only the runner's model proxy does): it gets the model
   * key, or with Claude on Vertex AI the Vertex AI User role and the settings that name it.
   */
  modelKey: boolean;
}

/** A turn's synchronous POST is held until the turn ends, and a model stream lasts at most a turn. */
export const requestTimeoutSeconds = (s: Settings) => Math.min(3600, s.turnTimeoutSeconds + 60);

/**
 * The runner's concurrency follows from its memory: the model proxy holds a request body (up to
 * the Messages API's 32 MiB, MAX_MODEL_REQUEST_BYTES in functions/src/http/model-proxy.ts) in
 * memory while a worker thread parses a copy of it, so a request in flight may take twice that.
 * What is left after the runtime's own share, divided by that, is how many fit.
 */
export const RUNNER_MEMORY_MIB = 2048;
const RUNTIME_BASELINE_MIB = 256;
const MODEL_REQUEST_MIB = 32;
export const RUNNER_CONCURRENCY = Math.floor((RUNNER_MEMORY_MIB - RUNTIME_BASELINE_MIB) / (2 * MODEL_REQUEST_MIB));

export function functionRoles(s: Settings): Record<Serve, FunctionRole> {
  const timeoutSeconds = requestTimeoutSeconds(s);
  return {
    public: {
      serve: 'public',
      ingress: 'ALLOW_ALL',
      memory: '512Mi',
      cpu: '1',
      // Most requests wait (on a turn, on SSE): one instance serves many.
      concurrency: 80,
      maxInstances: s.apiMaxInstances,
      timeoutSeconds,
      modelKey: false,
    },
    runner: {
      serve: 'runner',
      ingress: 'ALLOW_INTERNAL_ONLY',
      memory: `${RUNNER_MEMORY_MIB}Mi`,
      cpu: '1',
      concurrency: RUNNER_CONCURRENCY,
      maxInstances: s.runnerMaxInstances,
      timeoutSeconds,
      modelKey: true,
    },
  };
}

export interface EnvironmentRefs {
  jobName: pulumi.Input<string>;
  stateBucket: pulumi.Input<string>;
  /** The runner endpoint's URL: what the launcher hands every execution as API_URL. */
  runnerUrl: pulumi.Input<string>;
  /** The sweeper account's email: the only identity the sweeper route accepts. */
  sweeperEmail: pulumi.Input<string>;
}

/** Read by the platform's runtime rather than by the service. */
export const PLATFORM_VARIABLES = ['LOG_EXECUTION_ID', 'NODE_ENV'] as const;

/**
 * Set by Cloud Run itself: "The environment variables defined in the container runtime contract
 * are reserved and cannot be set" (PORT, K_SERVICE, ...;
 * https://cloud.google.com/run/docs/configuring/services/overview-environment-variables). The
 * service reads some of them, but a deployment that sets one is refused.
 */
type ReservedName = 'PORT' | 'K_SERVICE' | 'K_REVISION' | 'K_CONFIGURATION' | 'FUNCTION_TARGET' | 'FUNCTION_SIGNATURE_TYPE';

/** Settings that exist for tests alone: a deployment that set one would not compile. */
type TestOnlySetting = 'CLAUDERUN_TEST_SETTINGS_IN_CLOUD' | 'CLAUDERUN_EGRESS_TEST_RESOLVE';

/** A name the service reads that a deployment may set. */
export type DeployableSetting = Exclude<SettingName, ReservedName | TestOnlySetting>;

/**
 * A function's environment, by the names the service reads (functions/src/config.ts): a name it
 * does not know, or one the platform reserves, does not compile.
 */
export type FunctionEnvironment = { [name in DeployableSetting | (typeof PLATFORM_VARIABLES)[number]]?: pulumi.Input<string> };

const budget = (limit: number | null) => (limit === null ? 'none' : String(limit));

/**
 * The model settings of the function that calls the model. With the model key nothing: the key
 * (a secret variable) chooses the Claude API. With Vertex AI, Claude in this project and the
 * stack's Vertex location, called with the function's own service account.
 */
function modelEnvironment(s: Settings): FunctionEnvironment {
  if (s.modelUpstream === 'anthropic') return {};
  return { CLAUDERUN_MODEL_UPSTREAM: 'vertex', CLAUDERUN_VERTEX_PROJECT: s.project, CLAUDERUN_VERTEX_REGION: s.vertexRegion };
}

/** A function's plain environment. No secret belongs here. */
export function functionEnvironment(s: Settings, n: Names, serve: Serve, refs: EnvironmentRefs): FunctionEnvironment {
  const shared: FunctionEnvironment = {
    CLAUDERUN_SERVE: serve,
    CLAUDERUN_STORE: 'firestore',
    GOOGLE_CLOUD_PROJECT: s.project,
    CLAUDERUN_BLOBS: 'gcs',
    CLAUDERUN_GCS_BUCKET: refs.stateBucket,
    CLAUDERUN_SANDBOX: 'cloudrun',
    CLAUDERUN_CLOUDRUN_JOB: pulumi.interpolate`projects/${s.project}/locations/${s.region}/jobs/${refs.jobName}`,
    // Both functions may start or stop executions, so both know where sandboxes reach the API.
    CLAUDERUN_API_URL: refs.runnerUrl,
    CLAUDERUN_AUTH: s.authMode,
    CLAUDERUN_TURN_TIMEOUT_SECONDS: String(s.turnTimeoutSeconds),
    CLAUDERUN_SANDBOX_MEMORY_MB: String(s.sandboxMemoryMb),
    CLAUDERUN_SANDBOX_CPUS: String(s.sandboxCpus),
    // One global limit and one global rate, held in the store: both functions must agree on them.
    CLAUDERUN_MAX_RUNNING_SANDBOXES: String(s.maxRunningSandboxes),
    CLAUDERUN_RUNJOBS_PER_MINUTE: String(s.runJobsPerMinute),
    // The pool is filled by the public function (claims, the sweeper) and waited on at the runner's.
    CLAUDERUN_WARM_SANDBOXES: String(s.warmSandboxes),
    CLAUDERUN_WARM_SANDBOX_IDLE_SECONDS: String(s.warmSandboxIdleSeconds),
    // Fair use, counted in the store: a turn is admitted by one function and its model calls are
    // metered by the other.
    CLAUDERUN_MAX_RUNNING_TURNS_PER_USER: String(s.maxRunningTurnsPerUser),
    CLAUDERUN_MAX_TURNS_PER_MINUTE: String(s.maxTurnsPerMinute),
    CLAUDERUN_DAILY_TOKEN_LIMIT: budget(s.dailyTokenLimit),
    CLAUDERUN_DAILY_COST_LIMIT_USD: budget(s.dailyCostLimitUsd),
    // The runner counts it on each connection out; the public function shows it in /api/usage.
    CLAUDERUN_DAILY_EGRESS_LIMIT_BYTES: budget(s.dailyEgressLimitBytes),
    // The only writable place in a function's filesystem; nothing durable is kept there.
    CLAUDERUN_DATA_DIR: '/tmp/clauderun',
    // Cloud Functions adds LOG_EXECUTION_ID=true to every function it deploys through its v2 API
    // (cloud.google.com/functions/docs/release-notes, June 18 2024: execution IDs in logs; the
    // runtime pages say it is set automatically for functions created with the Cloud Functions
    // API), and a value the program does not declare shows as a change on every `pulumi up`.
    LOG_EXECUTION_ID: 'true',
    // The Functions Framework answers a crash or SIGTERM itself, naming the error outside production.
    NODE_ENV: 'production',
  };
  // Both functions judge models by the same list: the public one a conversation's choice, the runner's proxy each call.
  if (s.models !== undefined) {
    shared.CLAUDERUN_MODEL = s.models.model;
    shared.CLAUDERUN_SMALL_FAST_MODEL = s.models.smallFastModel;
    shared.CLAUDERUN_MODELS = s.models.allowed.join(',');
  }
  if (serve === 'runner') {
    const model = functionRoles(s)[serve].modelKey ? modelEnvironment(s) : {};
    // The tunnel that carries a sandbox's connections out ends at the runner, which judges them.
    return s.egressAllow === '' ? { ...shared, ...model } : { ...shared, ...model, CLAUDERUN_EGRESS_ALLOW: s.egressAllow };
  }
  return {
    ...shared,
    CLAUDERUN_SWEEPER_ACCOUNT: refs.sweeperEmail,
    // The audience Cloud Scheduler puts in the OIDC token (scheduler.ts): the public URL.
    CLAUDERUN_SWEEPER_AUDIENCE: n.apiUrl,
    // The public routes are the ones a user holds open (event streams, waiting requests).
    CLAUDERUN_MAX_OPEN_REQUESTS_PER_USER: String(s.maxOpenRequestsPerUser),
  };
}
