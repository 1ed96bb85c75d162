import * as pulumi from '@pulumi/pulumi';
import { z } from 'zod';
import { AuthMode as ServiceAuthMode, CloudAuthMode } from '../functions/src/contract/api.js';
import { DEFAULT_LIMITS } from '../functions/src/config.js';
import { egressAllowSchema } from '../functions/src/egress/allowlist.js';

/**
 * The stack's settings: every configuration key the program reads is declared here once, with its
 * default and its limits. `parseSettings` is pure (tests feed it tables of cases); `readSettings`
 * reads the stack's configuration. `infra/Pulumi.example.yaml` lists every key (a test keeps the
 * two in step). A setting the service has too takes the service's default (DEFAULT_LIMITS in
 * functions/src/config.ts), so that the two cannot drift apart. The names derived from the settings (buckets, the job, the API's URL) live here too,
 * so that every module agrees on them.
 */

/** `gcp:` keys are the Google provider's own; the others are this project's (`clauderun:`). */
export const CONFIG_KEYS = [
  'gcp:project',
  'gcp:region',
  'clauderun:anthropicApiKey',
  'clauderun:modelUpstream',
  'clauderun:vertexRegion',
  'clauderun:model',
  'clauderun:smallFastModel',
  'clauderun:models',
  'clauderun:authMode',
  'clauderun:turnTimeoutSeconds',
  'clauderun:sandboxMemoryMb',
  'clauderun:sandboxCpus',
  'clauderun:apiMaxInstances',
  'clauderun:runnerMaxInstances',
  'clauderun:maxRunningSandboxes',
  'clauderun:runJobsPerMinute',
  'clauderun:warmSandboxes',
  'clauderun:warmSandboxIdleSeconds',
  'clauderun:maxRunningTurnsPerUser',
  'clauderun:maxTurnsPerMinute',
  'clauderun:maxOpenRequestsPerUser',
  'clauderun:dailyTokenLimit',
  'clauderun:dailyCostLimitUsd',
  'clauderun:dailyEgressLimitBytes',
  'clauderun:egressAllow',
  'clauderun:firestoreLocation',
  'clauderun:deletedStateRetentionDays',
  'clauderun:firestoreIndexesFile',
  'clauderun:protect',
] as const;

/** Authenticators that may face the internet (the service's CloudAuthMode). `header` trusts X-User-Id: local use only. */
export const CLOUD_AUTH_MODES = CloudAuthMode.options;
export type AuthMode = CloudAuthMode;
const isCloudAuthMode = (v: string): v is AuthMode => CloudAuthMode.safeParse(v).success;

/** Cloud Run jobs take whole CPUs from this list; each CPU allows at most 4 GiB of memory. */
export const JOB_CPUS = [1, 2, 4, 6, 8] as const;

/**
 * The API holds a synchronous POST until its turn ends, and a Cloud Function's HTTP request may
 * last at most 3600 s: a turn must end a minute before that.
 */
export const MAX_TURN_TIMEOUT_SECONDS = 3540;

/** Running job executions per project and region (cloud.google.com/run/quotas). */
export const MAX_RUNNING_EXECUTIONS = 1000;

/** Where the runner's model proxy sends the agent's calls. */
export const MODEL_UPSTREAMS = ['anthropic', 'vertex'] as const;
export type ModelUpstream = (typeof MODEL_UPSTREAMS)[number];

/**
 * Claude on Vertex AI's default location: the global endpoint, which routes each request to a
 * region with capacity, has no price premium and serves the newer models
 * (cloud.google.com/vertex-ai/generative-ai/docs/partner-models/use-partner-models, "regional
 * and global endpoints"; platform.claude.com/docs/en/build-with-claude/claude-on-vertex-ai,
 * "Global vs regional endpoints"). A region keeps the data there (us-east5, europe-west1, ...).
 */
export const DEFAULT_VERTEX_REGION = 'global';

export interface Settings {
  project: string;
  region: string;
  /** `anthropic` (the model key, a secret) or `vertex` (Claude on Vertex AI in this project, no key). */
  modelUpstream: ModelUpstream;
  /** Vertex AI's location for Claude: `global` or a region that offers the models. */
  vertexRegion: string;
  /**
   * The agent's models (the service's CLAUDERUN_MODEL, CLAUDERUN_SMALL_FAST_MODEL, CLAUDERUN_MODELS),
   * given to both functions: the public one admits a conversation's chosen model by the list, the
   * runner's model proxy enforces it. Unset: the service's defaults (Claude API names).
   */
  models: { model: string; smallFastModel: string; allowed: string[] } | undefined;
  /** Firestore location (a region or a multi-region such as `eur3`); defaults to `region`. */
  firestoreLocation: string;
  authMode: AuthMode;
  turnTimeoutSeconds: number;
  sandboxMemoryMb: number;
  sandboxCpus: number;
  /** Upper bound on the public function's instances: the cost ceiling of a traffic spike. */
  apiMaxInstances: number;
  /** Upper bound on the runner function's instances (the sandboxes' model calls and uploads). */
  runnerMaxInstances: number;
  /**
   * Sandboxes running at once across all users (the service's CLAUDERUN_MAX_RUNNING_SANDBOXES);
   * the sandbox subnet is sized for it.
   */
  maxRunningSandboxes: number;
  /** Executions the service starts per minute at most, under Cloud Run's per-region runJob quota. */
  runJobsPerMinute: number;
  /**
   * Sandboxes started ahead of their turns (the service's CLAUDERUN_WARM_SANDBOXES): each one idle
   * is billed like a running sandbox, and holds one request open on the runner function.
   */
  warmSandboxes: number;
  /** How long a warm sandbox waits for a turn before it stops and another takes its place. */
  warmSandboxIdleSeconds: number;
  /** Fair use, per user: turns running at once, turns started a minute, requests held open (streams, waits). */
  maxRunningTurnsPerUser: number;
  maxTurnsPerMinute: number;
  maxOpenRequestsPerUser: number;
  /** Daily budgets per user; null: no limit. */
  dailyTokenLimit: number | null;
  dailyCostLimitUsd: number | null;
  dailyEgressLimitBytes: number | null;
  /**
   * Hosts sandboxes may connect to through the runner (the service's CLAUDERUN_EGRESS_ALLOW, same
   * syntax, checked by the service's own parser); empty: none.
   */
  egressAllow: string;
  /** Days a deleted or replaced conversation state stays recoverable in the bucket. */
  deletedStateRetentionDays: number;
  /** The store's composite indexes, relative to the repository root. */
  firestoreIndexesFile: string;
  /** Deletion protection on everything that holds data or runs turns (default true). */
  protect: boolean;
}

/**
 * Cloud Run's least memory for a CPU count: "4 vCPU 2 to 16 GiB, 6 vCPU 4 to 24 GiB, 8 vCPU 4 to
 * 32 GiB" (https://cloud.google.com/run/docs/configuring/jobs/cpu). Below it Google refuses the job.
 */
const MIN_MEMORY_MB_FOR_CPUS: Readonly<Record<number, number>> = { 4: 2048, 6: 4096, 8: 4096 };

type PlainKey = Exclude<(typeof CONFIG_KEYS)[number], 'clauderun:anthropicApiKey'>;
/** Raw configuration values by key (absent or blank = the default). */
export type RawSettings = Partial<Record<PlainKey, string>>;

const trimmed = (v: unknown) => (typeof v === 'string' ? (v.trim() === '' ? undefined : v.trim()) : v);
/**
 * A whole number from `min` to `max`. The fallback is checked like a value given (`prefault`): a
 * service default Cloud Run cannot take stops the program rather than reaching Google.
 */
const whole = (key: string, min: number, max: number, fallback: number) =>
  z.preprocess(
    trimmed,
    z.coerce
      .number({ error: `${key} must be a number` })
      .int(`${key} must be a whole number`)
      .min(min, `${key} must be at least ${min}`)
      .max(max, `${key} must be at most ${max}`)
      .prefault(fallback),
  );

/** No bound but the service's own (none): what a number holds exactly. */
const UNBOUNDED = Number.MAX_SAFE_INTEGER;

/** A daily budget as the service takes it: a positive number (whole, for tokens), or `none` for no limit. */
const budget = (key: string, kind: 'whole' | 'any', fallback: number | null) =>
  z.preprocess(trimmed, z.string().optional()).transform((v, ctx) => {
    if (v === undefined) return fallback;
    if (v === 'none') return null;
    const n = Number(v);
    if (Number.isFinite(n) && n > 0 && (kind === 'any' || Number.isInteger(n))) return n;
    ctx.addIssue({ code: 'custom', message: `${key} must be a positive ${kind === 'whole' ? 'whole ' : ''}number or none` });
    return z.NEVER;
  });

const Schema = z.object({
  'gcp:project': z.preprocess(
    trimmed,
    z
      .string({ error: 'gcp:project is required (pulumi config set gcp:project <project id>)' })
      .regex(/^[a-z][a-z0-9-]{4,28}[a-z0-9]$/, 'gcp:project must be a project id (6-30 lowercase letters, digits, hyphens)'),
  ),
  'gcp:region': z.preprocess(
    trimmed,
    z
      .string({ error: 'gcp:region is required (pulumi config set gcp:region <region>, e.g. europe-west1)' })
      .regex(/^[a-z]+-[a-z]+[0-9]+$/, 'gcp:region must be a region such as europe-west1'),
  ),
  'clauderun:firestoreLocation': z.preprocess(trimmed, z.string().optional()),
  'clauderun:modelUpstream': z.preprocess(
    trimmed,
    z.enum(MODEL_UPSTREAMS, { error: `clauderun:modelUpstream must be one of: ${MODEL_UPSTREAMS.join(', ')}` }).default('anthropic'),
  ),
  'clauderun:vertexRegion': z.preprocess(
    trimmed,
    z
      .string()
      .regex(/^(global|us|eu|[a-z]+-[a-z]+[0-9]+)$/, 'clauderun:vertexRegion must be global, a multi-region (us, eu) or a region such as us-east5')
      .default(DEFAULT_VERTEX_REGION),
  ),
  'clauderun:model': z.preprocess(trimmed, z.string().min(1).optional()),
  'clauderun:smallFastModel': z.preprocess(trimmed, z.string().min(1).optional()),
  'clauderun:models': z.preprocess(trimmed, z.string().optional()),
  'clauderun:authMode': z.preprocess(trimmed, z.string().default(CloudAuthMode.enum.apikey)),
  'clauderun:turnTimeoutSeconds': whole('clauderun:turnTimeoutSeconds', 60, MAX_TURN_TIMEOUT_SECONDS, DEFAULT_LIMITS.CLAUDERUN_TURN_TIMEOUT_SECONDS),
  'clauderun:sandboxMemoryMb': whole('clauderun:sandboxMemoryMb', 512, 32768, DEFAULT_LIMITS.CLAUDERUN_SANDBOX_MEMORY_MB),
  'clauderun:sandboxCpus': z.preprocess(
    trimmed,
    z.coerce
      .number({ error: 'clauderun:sandboxCpus must be a number' })
      .refine((v) => (JOB_CPUS as readonly number[]).includes(v), { error: `clauderun:sandboxCpus must be one of: ${JOB_CPUS.join(', ')}` })
      .prefault(DEFAULT_LIMITS.CLAUDERUN_SANDBOX_CPUS),
  ),
  'clauderun:apiMaxInstances': whole('clauderun:apiMaxInstances', 1, 1000, 10),
  // The sandboxes' model calls all go through the runner function: 50 sandboxes with 8 calls in
  // flight each need 400 requests at once, and 20 instances of 28 requests each hold 560. When
  // every instance is busy a request waits ~30 s, then fails (cloud.google.com/functions/docs/configuring/concurrency).
  'clauderun:runnerMaxInstances': whole('clauderun:runnerMaxInstances', 1, 1000, 20),
  // Cloud Run runs at most 1,000 job executions at once per project and region
  // (cloud.google.com/run/quotas, "Job execution").
  'clauderun:maxRunningSandboxes': whole('clauderun:maxRunningSandboxes', 1, MAX_RUNNING_EXECUTIONS, DEFAULT_LIMITS.CLAUDERUN_MAX_RUNNING_SANDBOXES),
  'clauderun:runJobsPerMinute': whole('clauderun:runJobsPerMinute', 1, 1000, DEFAULT_LIMITS.CLAUDERUN_RUNJOBS_PER_MINUTE),
  'clauderun:warmSandboxes': whole('clauderun:warmSandboxes', 0, MAX_RUNNING_EXECUTIONS, DEFAULT_LIMITS.CLAUDERUN_WARM_SANDBOXES),
  // At least a minute: the sweeper, which replaces expired warm sandboxes when no prompt comes, runs once a minute.
  'clauderun:warmSandboxIdleSeconds': whole('clauderun:warmSandboxIdleSeconds', 60, 3600, DEFAULT_LIMITS.CLAUDERUN_WARM_SANDBOX_IDLE_SECONDS),
  // A user cannot run more turns at once than the project runs executions.
  'clauderun:maxRunningTurnsPerUser': whole(
    'clauderun:maxRunningTurnsPerUser',
    1,
    MAX_RUNNING_EXECUTIONS,
    DEFAULT_LIMITS.CLAUDERUN_MAX_RUNNING_TURNS_PER_USER,
  ),
  'clauderun:maxTurnsPerMinute': whole('clauderun:maxTurnsPerMinute', 1, UNBOUNDED, DEFAULT_LIMITS.CLAUDERUN_MAX_TURNS_PER_MINUTE),
  'clauderun:maxOpenRequestsPerUser': whole('clauderun:maxOpenRequestsPerUser', 1, UNBOUNDED, DEFAULT_LIMITS.CLAUDERUN_MAX_OPEN_REQUESTS_PER_USER),
  'clauderun:dailyTokenLimit': budget('clauderun:dailyTokenLimit', 'whole', DEFAULT_LIMITS.CLAUDERUN_DAILY_TOKEN_LIMIT),
  'clauderun:dailyCostLimitUsd': budget('clauderun:dailyCostLimitUsd', 'any', DEFAULT_LIMITS.CLAUDERUN_DAILY_COST_LIMIT_USD),
  'clauderun:dailyEgressLimitBytes': budget('clauderun:dailyEgressLimitBytes', 'whole', DEFAULT_LIMITS.CLAUDERUN_DAILY_EGRESS_LIMIT_BYTES),
  'clauderun:egressAllow': z.preprocess(trimmed, z.string().default('')).superRefine((v, ctx) => {
    const checked = egressAllowSchema('clauderun:egressAllow').safeParse(v);
    for (const issue of checked.error?.issues ?? []) ctx.addIssue({ code: 'custom', message: issue.message });
  }),
  'clauderun:deletedStateRetentionDays': whole('clauderun:deletedStateRetentionDays', 1, 365, 7),
  'clauderun:firestoreIndexesFile': z.preprocess(trimmed, z.string().default('firestore.indexes.json')),
  'clauderun:protect': z.preprocess(trimmed, z.enum(['true', 'false'], { error: 'clauderun:protect must be true or false' }).default('true')),
});

export class SettingsError extends Error {
  override name = 'SettingsError';
  constructor(problem: string) {
    super(`invalid stack configuration: ${problem}`);
  }
}

export function parseSettings(raw: RawSettings): Settings {
  const parsed = Schema.safeParse(raw);
  if (!parsed.success) throw new SettingsError(parsed.error.issues.map((issue) => issue.message).join('; '));
  const c = parsed.data;
  const authMode = c['clauderun:authMode'];
  if (authMode === ServiceAuthMode.enum.header) {
    throw new SettingsError(
      `clauderun:authMode ${authMode} trusts X-User-Id and is for local use only; choose ${CLOUD_AUTH_MODES.join(' or ')} for the cloud`,
    );
  }
  if (!isCloudAuthMode(authMode)) throw new SettingsError(`clauderun:authMode must be one of: ${CLOUD_AUTH_MODES.join(', ')}`);
  const memoryMb = c['clauderun:sandboxMemoryMb'];
  const cpus = c['clauderun:sandboxCpus'];
  if (memoryMb > cpus * 4096) {
    throw new SettingsError(
      `clauderun:sandboxMemoryMb ${memoryMb} needs clauderun:sandboxCpus of at least ${Math.ceil(memoryMb / 4096)} (Cloud Run allows 4 GiB per CPU)`,
    );
  }
  if (c['clauderun:warmSandboxes'] > c['clauderun:maxRunningSandboxes']) {
    throw new SettingsError(
      `clauderun:warmSandboxes ${c['clauderun:warmSandboxes']} is more than clauderun:maxRunningSandboxes ${c['clauderun:maxRunningSandboxes']}: warm sandboxes count against it`,
    );
  }
  const leastMemoryMb = MIN_MEMORY_MB_FOR_CPUS[cpus] ?? 0;
  if (memoryMb < leastMemoryMb) {
    throw new SettingsError(
      `clauderun:sandboxCpus ${cpus} needs clauderun:sandboxMemoryMb of at least ${leastMemoryMb} (Cloud Run's minimum for ${cpus} CPUs)`,
    );
  }
  return {
    models: modelSettings(c['clauderun:modelUpstream'], c['clauderun:model'], c['clauderun:smallFastModel'], c['clauderun:models']),
    project: c['gcp:project'],
    region: c['gcp:region'],
    firestoreLocation: c['clauderun:firestoreLocation'] ?? c['gcp:region'],
    modelUpstream: c['clauderun:modelUpstream'],
    vertexRegion: c['clauderun:vertexRegion'],
    authMode,
    turnTimeoutSeconds: c['clauderun:turnTimeoutSeconds'],
    sandboxMemoryMb: memoryMb,
    sandboxCpus: cpus,
    apiMaxInstances: c['clauderun:apiMaxInstances'],
    runnerMaxInstances: c['clauderun:runnerMaxInstances'],
    maxRunningSandboxes: c['clauderun:maxRunningSandboxes'],
    runJobsPerMinute: c['clauderun:runJobsPerMinute'],
    warmSandboxes: c['clauderun:warmSandboxes'],
    warmSandboxIdleSeconds: c['clauderun:warmSandboxIdleSeconds'],
    maxRunningTurnsPerUser: c['clauderun:maxRunningTurnsPerUser'],
    maxTurnsPerMinute: c['clauderun:maxTurnsPerMinute'],
    maxOpenRequestsPerUser: c['clauderun:maxOpenRequestsPerUser'],
    dailyTokenLimit: c['clauderun:dailyTokenLimit'],
    dailyCostLimitUsd: c['clauderun:dailyCostLimitUsd'],
    dailyEgressLimitBytes: c['clauderun:dailyEgressLimitBytes'],
    egressAllow: c['clauderun:egressAllow'],
    deletedStateRetentionDays: c['clauderun:deletedStateRetentionDays'],
    firestoreIndexesFile: c['clauderun:firestoreIndexesFile'],
    protect: c['clauderun:protect'] === 'true',
  };
}

/**
 * The agent's models, all or none: the model and the small, fast model, and the list a
 * conversation may choose from (by default the two). Vertex AI names its models with a version
 * (`claude-sonnet-4-5@20250929`), so a Vertex stack must name them.
 */
function modelSettings(
  upstream: ModelUpstream,
  model: string | undefined,
  smallFastModel: string | undefined,
  list: string | undefined,
): Settings['models'] {
  if (model === undefined && smallFastModel === undefined && list === undefined) {
    if (upstream === 'vertex') {
      throw new SettingsError(
        'clauderun:model and clauderun:smallFastModel are required with modelUpstream vertex: Vertex AI names its models with a version, e.g. claude-sonnet-4-5@20250929',
      );
    }
    return undefined;
  }
  if (model === undefined || smallFastModel === undefined)
    throw new SettingsError('clauderun:model and clauderun:smallFastModel: set both or neither');
  const allowed = [
    ...new Set(
      (list ?? '')
        .split(',')
        .map((m) => m.trim())
        .filter((m) => m !== ''),
    ),
  ];
  if (allowed.length === 0) return { model, smallFastModel, allowed: [...new Set([model, smallFastModel])] };
  const missing = [model, smallFastModel].filter((m) => !allowed.includes(m));
  if (missing.length > 0)
    throw new SettingsError(`clauderun:models must include clauderun:model and clauderun:smallFastModel: ${missing.join(', ')} missing`);
  return { model, smallFastModel, allowed };
}

/** The stack's settings, from `pulumi config`. */
export function readSettings(): Settings {
  const raw: RawSettings = {};
  for (const key of CONFIG_KEYS) {
    if (key === 'clauderun:anthropicApiKey') continue;
    const [namespace, name] = key.split(':') as [string, string];
    const value = new pulumi.Config(namespace).get(name);
    if (value !== undefined) raw[key] = value;
  }
  return parseSettings(raw);
}

/**
 * The model key: only ever a secret (`pulumi config set --secret anthropicApiKey sk-ant-...`).
 * With Claude on Vertex AI there is none: the runner calls with its service account's tokens.
 */
export function readModelKey(s: Settings): pulumi.Output<string> | undefined {
  return s.modelUpstream === 'anthropic' ? new pulumi.Config('clauderun').requireSecret('anthropicApiKey') : undefined;
}

/** Names every module agrees on. Fixed names (never auto-named) keep the API's URL predictable. */
export function names(s: Settings) {
  const apiFunction = 'clauderun-api';
  const apiHost = `${s.region}-${s.project}.cloudfunctions.net`;
  return {
    /** The public function: /api, the web page, /healthz, the sweeper's route. */
    apiFunction,
    /** The runner function: /internal/turns and the model proxy, reached by sandboxes only. */
    runnerFunction: 'clauderun-runner',
    /**
     * A Cloud Functions (2nd gen) URL is https://REGION-PROJECT.cloudfunctions.net/NAME, known
     * before the function exists: the public function needs it in its own environment (the
     * sweeper's OIDC audience), and so does the scheduler job that calls it.
     */
    apiHost,
    apiUrl: `https://${apiHost}/${apiFunction}`,
    sandboxJob: 'clauderun-sandbox',
    network: 'clauderun-sandbox',
    /** The internal load balancer's pieces in front of the runner function share this name. */
    runnerEndpoint: 'clauderun-runner',
    stateBucket: `${s.project}-clauderun-state`,
    sourceBucket: `${s.project}-clauderun-source`,
    registry: 'clauderun',
    registryHost: `${s.region}-docker.pkg.dev`,
    sandboxAccount: 'clauderun-sandbox',
    apiAccount: 'clauderun-api',
    runnerAccount: 'clauderun-runner',
    sweeperAccount: 'clauderun-sweeper',
    buildAccount: 'clauderun-build',
    sweeperJob: 'clauderun-sweep',
    modelKeySecret: 'clauderun-anthropic-api-key',
    tokenSecret: 'clauderun-token-secret',
  };
}

export type Names = ReturnType<typeof names>;

/**
 * Explicit deletion protection, one rule for everything that holds data or runs turns: with
 * `protect` (the default) deleting them fails, both in Google Cloud and in `pulumi destroy`
 * (PREVENT); without it they can be deleted. Never left to a provider default.
 */
export function deletionPolicy(s: Settings): 'PREVENT' | 'DELETE' {
  return s.protect ? 'PREVENT' : 'DELETE';
}
