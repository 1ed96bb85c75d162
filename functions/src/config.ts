import path from 'node:path';
import { z } from 'zod';
import { AuthMode } from './contract/api.js';
import type { EventBudget } from './domain/event-budget.js';
import type { Quota } from './domain/quota.js';
import { allowsName, egressAllowSchema } from './egress/allowlist.js';
import type { EgressSettings } from './egress/policy.js';
import { testResolveSchema } from './egress/test-resolve.js';

/**
 * The only reader of process.env in the service. Every setting is declared once here, with its
 * default; `loadConfig` is pure so that tests can feed it any environment.
 */

export type { AuthMode };

/** Google's Identity Toolkit API, where Firebase email and password sign-in happens. */
const FIREBASE_AUTH_URL = 'https://identitytoolkit.googleapis.com';
/** Google's Secure Token API, where the page exchanges a refresh token for a new ID token. */
const FIREBASE_TOKEN_URL = 'https://securetoken.googleapis.com';

/**
 * The web page's sign-in endpoints. ID tokens are renewed, unless set otherwise, beside an Identity
 * Toolkit served under its host name (the Firebase Auth emulator's
 * http://host:port/identitytoolkit.googleapis.com serves /securetoken.googleapis.com too), else at
 * Google's: an emulator's refresh token sent to Google would only be refused.
 */
function webSignInOf(apiKey: string, authUrlSetting: string | undefined, tokenUrlSetting: string | undefined) {
  const authUrl = (authUrlSetting ?? FIREBASE_AUTH_URL).replace(/\/+$/, '');
  const beside = authUrl.replace(/\/identitytoolkit\.googleapis\.com$/, '/securetoken.googleapis.com');
  const tokenUrl = tokenUrlSetting?.replace(/\/+$/, '') ?? (beside === authUrl ? FIREBASE_TOKEN_URL : beside);
  return { apiKey, authUrl, tokenUrl };
}

/**
 * The limits' defaults, by the variable that changes each: the schema below and the deployment
 * (infra/config.ts) both take theirs from here, so that a stack that sets nothing runs with the
 * same limits as a local service.
 */
export const DEFAULT_LIMITS = {
  CLAUDERUN_TURN_TIMEOUT_SECONDS: 600,
  CLAUDERUN_SANDBOX_MEMORY_MB: 1024,
  CLAUDERUN_SANDBOX_CPUS: 1,
  CLAUDERUN_SANDBOX_PIDS: 256,
  CLAUDERUN_SANDBOX_DISK_MB: 512,
  CLAUDERUN_SANDBOX_TMP_MB: 128,
  CLAUDERUN_SANDBOX_FILES: 50_000,
  CLAUDERUN_MAX_PROMPT_BYTES: 100 * 1024,
  CLAUDERUN_MAX_STATE_BYTES: 25 * 1024 * 1024,
  /** Under the 32 MB a request to a Cloud Run function may carry (cloud.google.com/functions/quotas). */
  CLAUDERUN_MAX_FILE_BYTES: 16 * 1024 * 1024,
  CLAUDERUN_MAX_EVENTS_PER_TURN: 2000,
  CLAUDERUN_MAX_EVENT_BYTES_PER_TURN: 2 * 1024 * 1024,
  CLAUDERUN_MAX_OPEN_REQUESTS_PER_USER: 20,
  CLAUDERUN_MAX_RUNNING_TURNS_PER_USER: 2,
  CLAUDERUN_MAX_TURNS_PER_MINUTE: 10,
  CLAUDERUN_MAX_FILE_CHANGES_PER_MINUTE: 30,
  CLAUDERUN_MAX_RUNNING_SANDBOXES: 50,
  /** Warm sandboxes with Cloud Run (locally 1): each idle one is billed as a running sandbox. */
  CLAUDERUN_WARM_SANDBOXES: 0,
  /** How long a warm Cloud Run sandbox waits for a turn (locally 600 s): what an idle one may cost is bounded by it. */
  CLAUDERUN_WARM_SANDBOX_IDLE_SECONDS: 300,
  /** With Cloud Run sandboxes; local ones start without a rate limit. */
  CLAUDERUN_RUNJOBS_PER_MINUTE: 50,
  /** null: no limit. */
  CLAUDERUN_DAILY_TOKEN_LIMIT: null,
  CLAUDERUN_DAILY_COST_LIMIT_USD: 10,
  /** Eight turns' worth of the per-turn egress cap. */
  CLAUDERUN_DAILY_EGRESS_LIMIT_BYTES: 2 * 1024 * 1024 * 1024,
  CLAUDERUN_MAX_OUTPUT_TOKENS: 32_000,
  CLAUDERUN_MAX_MODEL_CALLS_IN_FLIGHT: 8,
  CLAUDERUN_MODEL_REQUEST_BYTES_PER_MINUTE: 256 * 1024 * 1024,
  /** Enough for an `npm install` of a few hundred packages over kept-alive connections. */
  CLAUDERUN_EGRESS_MAX_CONNECTIONS_PER_TURN: 200,
  CLAUDERUN_EGRESS_MAX_BYTES_PER_TURN: 256 * 1024 * 1024,
} as const;

/** A local service keeps one sandbox ready, for ten minutes at a time: it costs memory only. */
const LOCAL_WARM_SANDBOXES = 1;
const LOCAL_WARM_IDLE_SECONDS = 600;

const positiveInt = (name: string) =>
  z.coerce
    .number({ error: `${name} must be a number` })
    .int(`${name} must be a whole number`)
    .positive(`${name} must be positive`);

/** A daily budget: a positive number, or `none` for no limit. */
const budget = (name: string, fallback: number | null) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      const text = v?.trim() ?? '';
      if (text === '') return fallback;
      if (text === 'none') return null;
      const n = Number(text);
      if (Number.isFinite(n) && n > 0) return n;
      ctx.addIssue({ code: 'custom', message: `${name} must be a positive number or none` });
      return z.NEVER;
    });

const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));

const EnvSchema = z.object({
  PORT: positiveInt('PORT').max(65535).default(8080),
  CLAUDERUN_DATA_DIR: z.string().min(1).default('./.clauderun'),
  ANTHROPIC_API_KEY: optionalString,
  ANTHROPIC_BASE_URL: z.url({ error: 'ANTHROPIC_BASE_URL must be a URL' }).default('https://api.anthropic.com'),
  /** Where the model proxy sends the agent's calls; by default `anthropic` with a key, else `demo`. */
  CLAUDERUN_MODEL_UPSTREAM: z
    .enum(['anthropic', 'vertex', 'demo'], { error: 'CLAUDERUN_MODEL_UPSTREAM must be one of: anthropic, vertex, demo' })
    .optional(),
  /** The Google Cloud project whose Vertex AI serves Claude (CLAUDERUN_MODEL_UPSTREAM=vertex). */
  CLAUDERUN_VERTEX_PROJECT: optionalString.refine((v) => v === undefined || /^[a-z][a-z0-9-]{4,28}[a-z0-9]$/.test(v), {
    error: 'CLAUDERUN_VERTEX_PROJECT must be a project ID (6-30 lowercase letters, digits, hyphens)',
  }),
  /** Its location: a region that offers the models, or `global`. */
  CLAUDERUN_VERTEX_REGION: optionalString.refine((v) => v === undefined || /^[a-z][a-z0-9-]*[a-z0-9]$/.test(v), {
    error: 'CLAUDERUN_VERTEX_REGION must be a region name such as us-east5, or global',
  }),
  /** A stand-in for the Vertex AI API (tests, `npm run sim`); by default the region's Google endpoint. */
  /** The access token goes with every call: in the clear only to a stand-in on this machine. */
  CLAUDERUN_VERTEX_ENDPOINT: optionalString.refine(
    (v) =>
      v === undefined || (URL.canParse(v) && (new URL(v).protocol === 'https:' || /^http:\/\/(127\.0\.0\.1|localhost|\[::1\])(:\d+)?(\/|$)/.test(v))),
    { error: 'CLAUDERUN_VERTEX_ENDPOINT must be an https URL (or http on this machine: 127.0.0.1, localhost, [::1])' },
  ),
  CLAUDERUN_STORE: z.enum(['sqlite', 'firestore'], { error: 'CLAUDERUN_STORE must be one of: sqlite, firestore' }).default('sqlite'),
  /** The Google Cloud project of Firestore (and the other clients); set by the platform in the cloud. */
  GOOGLE_CLOUD_PROJECT: optionalString,
  /** The official Firestore emulator (tests, `npm run sim`): host:port. */
  FIRESTORE_EMULATOR_HOST: optionalString,
  CLAUDERUN_BLOBS: z.enum(['fs', 'gcs'], { error: 'CLAUDERUN_BLOBS must be one of: fs, gcs' }).default('fs'),
  /** The bucket of conversation state archives (CLAUDERUN_BLOBS=gcs). */
  CLAUDERUN_GCS_BUCKET: optionalString,
  /** A stand-in for the Cloud Storage JSON API (tests, `npm run sim`). */
  CLAUDERUN_GCS_ENDPOINT: optionalString.refine((v) => v === undefined || URL.canParse(v), { error: 'CLAUDERUN_GCS_ENDPOINT must be a URL' }),
  CLAUDERUN_SANDBOX: z.enum(['local', 'cloudrun'], { error: 'CLAUDERUN_SANDBOX must be one of: local, cloudrun' }).default('local'),
  /** The Cloud Run Job each turn executes (CLAUDERUN_SANDBOX=cloudrun). */
  CLAUDERUN_CLOUDRUN_JOB: optionalString.refine((v) => v === undefined || /^projects\/[^/]+\/locations\/[^/]+\/jobs\/[^/]+$/.test(v), {
    error: 'CLAUDERUN_CLOUDRUN_JOB must look like projects/P/locations/L/jobs/J',
  }),
  /** A stand-in for the Cloud Run Admin API (tests, `npm run sim`): plain HTTP, no credentials. */
  CLAUDERUN_CLOUDRUN_ENDPOINT: optionalString.refine((v) => v === undefined || URL.canParse(v), {
    error: 'CLAUDERUN_CLOUDRUN_ENDPOINT must be a URL',
  }),
  /** The API's URL as sandboxes reach it; locally the loopback port. */
  CLAUDERUN_API_URL: optionalString.refine((v) => v === undefined || URL.canParse(v), { error: 'CLAUDERUN_API_URL must be a URL' }),
  /** One auth mode or several (AuthMode), comma-separated. */
  CLAUDERUN_AUTH: z
    .string()
    .default(AuthMode.enum.header)
    .transform((v) => [
      ...new Set(
        v
          .split(',')
          .map((mode) => mode.trim())
          .filter((mode) => mode !== ''),
      ),
    ])
    .pipe(
      z
        .array(z.enum(AuthMode.options, { error: `CLAUDERUN_AUTH must list modes out of: ${AuthMode.options.join(', ')}` }))
        .min(1, 'CLAUDERUN_AUTH must name at least one mode'),
    ),
  /** The Firebase / Identity Platform project whose ID tokens are accepted (defaults to GOOGLE_CLOUD_PROJECT). */
  FIREBASE_PROJECT_ID: optionalString,
  /** Where the token-signing keys are published; tests point it at a local key set. */
  CLAUDERUN_FIREBASE_JWKS_URL: optionalString.refine((v) => v === undefined || URL.canParse(v), {
    error: 'CLAUDERUN_FIREBASE_JWKS_URL must be a URL',
  }),
  /** The Firebase project's Web API key: lets the web page sign people in with email and password (firebase mode). */
  FIREBASE_WEB_API_KEY: optionalString,
  /** The Identity Toolkit API the web page signs in at; the Firebase Auth emulator or a test fake can stand in. */
  CLAUDERUN_FIREBASE_AUTH_URL: optionalString.refine((v) => v === undefined || URL.canParse(v), {
    error: 'CLAUDERUN_FIREBASE_AUTH_URL must be a URL',
  }),
  /** The Secure Token API the web page renews ID tokens at (see webSignInOf for its default). */
  CLAUDERUN_FIREBASE_TOKEN_URL: optionalString.refine((v) => v === undefined || URL.canParse(v), {
    error: 'CLAUDERUN_FIREBASE_TOKEN_URL must be a URL',
  }),
  CLAUDERUN_TURN_TIMEOUT_SECONDS: positiveInt('CLAUDERUN_TURN_TIMEOUT_SECONDS')
    .max(24 * 3600)
    .default(DEFAULT_LIMITS.CLAUDERUN_TURN_TIMEOUT_SECONDS),
  CLAUDERUN_SANDBOX_MEMORY_MB: positiveInt('CLAUDERUN_SANDBOX_MEMORY_MB').min(256).default(DEFAULT_LIMITS.CLAUDERUN_SANDBOX_MEMORY_MB),
  CLAUDERUN_SANDBOX_CPUS: z.coerce
    .number({ error: 'CLAUDERUN_SANDBOX_CPUS must be a number' })
    .positive()
    .max(64)
    .default(DEFAULT_LIMITS.CLAUDERUN_SANDBOX_CPUS),
  CLAUDERUN_SANDBOX_PIDS: positiveInt('CLAUDERUN_SANDBOX_PIDS').default(DEFAULT_LIMITS.CLAUDERUN_SANDBOX_PIDS),
  /** The sandbox's home and workspace together: a tmpfs, so it counts against its memory. */
  CLAUDERUN_SANDBOX_DISK_MB: positiveInt('CLAUDERUN_SANDBOX_DISK_MB').default(DEFAULT_LIMITS.CLAUDERUN_SANDBOX_DISK_MB),
  CLAUDERUN_SANDBOX_TMP_MB: positiveInt('CLAUDERUN_SANDBOX_TMP_MB').default(DEFAULT_LIMITS.CLAUDERUN_SANDBOX_TMP_MB),
  /** Files (inodes) in the sandbox's disk, and again in its /tmp. */
  CLAUDERUN_SANDBOX_FILES: positiveInt('CLAUDERUN_SANDBOX_FILES').default(DEFAULT_LIMITS.CLAUDERUN_SANDBOX_FILES),
  CLAUDERUN_MAX_PROMPT_BYTES: positiveInt('CLAUDERUN_MAX_PROMPT_BYTES').default(DEFAULT_LIMITS.CLAUDERUN_MAX_PROMPT_BYTES),
  CLAUDERUN_MAX_STATE_BYTES: positiveInt('CLAUDERUN_MAX_STATE_BYTES').default(DEFAULT_LIMITS.CLAUDERUN_MAX_STATE_BYTES),
  /** The largest file a client may put into a workspace in one request. */
  CLAUDERUN_MAX_FILE_BYTES: positiveInt('CLAUDERUN_MAX_FILE_BYTES').default(DEFAULT_LIMITS.CLAUDERUN_MAX_FILE_BYTES),
  /** Progress one turn may store: events, and the bytes of their data; past either, events are dropped. */
  CLAUDERUN_MAX_EVENTS_PER_TURN: positiveInt('CLAUDERUN_MAX_EVENTS_PER_TURN').default(DEFAULT_LIMITS.CLAUDERUN_MAX_EVENTS_PER_TURN),
  CLAUDERUN_MAX_EVENT_BYTES_PER_TURN: positiveInt('CLAUDERUN_MAX_EVENT_BYTES_PER_TURN').default(DEFAULT_LIMITS.CLAUDERUN_MAX_EVENT_BYTES_PER_TURN),
  /** Event streams and waiting requests one user may hold open at once (per API instance). */
  CLAUDERUN_MAX_OPEN_REQUESTS_PER_USER: positiveInt('CLAUDERUN_MAX_OPEN_REQUESTS_PER_USER').default(
    DEFAULT_LIMITS.CLAUDERUN_MAX_OPEN_REQUESTS_PER_USER,
  ),
  CLAUDERUN_MAX_RUNNING_TURNS_PER_USER: positiveInt('CLAUDERUN_MAX_RUNNING_TURNS_PER_USER').default(
    DEFAULT_LIMITS.CLAUDERUN_MAX_RUNNING_TURNS_PER_USER,
  ),
  CLAUDERUN_MAX_TURNS_PER_MINUTE: positiveInt('CLAUDERUN_MAX_TURNS_PER_MINUTE').default(DEFAULT_LIMITS.CLAUDERUN_MAX_TURNS_PER_MINUTE),
  /** Changes of workspace files (PUT, DELETE) one user may make in any 60 s. */
  CLAUDERUN_MAX_FILE_CHANGES_PER_MINUTE: positiveInt('CLAUDERUN_MAX_FILE_CHANGES_PER_MINUTE').default(
    DEFAULT_LIMITS.CLAUDERUN_MAX_FILE_CHANGES_PER_MINUTE,
  ),
  /**
   * Sandboxes started ahead of their turn, holding none (warm-pool.ts): by default 1 locally, 0
   * with Cloud Run, where each one idle is billed like a running sandbox.
   */
  CLAUDERUN_WARM_SANDBOXES: z.coerce
    .number({ error: 'CLAUDERUN_WARM_SANDBOXES must be a number' })
    .int('CLAUDERUN_WARM_SANDBOXES must be a whole number')
    .min(0, 'CLAUDERUN_WARM_SANDBOXES must be 0 or more')
    .max(1000, 'CLAUDERUN_WARM_SANDBOXES must be at most 1000')
    .optional(),
  /** How long a warm sandbox waits for a turn before it stops (and, while the pool is wanted, another starts). */
  CLAUDERUN_WARM_SANDBOX_IDLE_SECONDS: positiveInt('CLAUDERUN_WARM_SANDBOX_IDLE_SECONDS')
    .min(10, 'CLAUDERUN_WARM_SANDBOX_IDLE_SECONDS must be at least 10')
    .optional(),
  /** Sandboxes running at once across all users; keep it under the Cloud Run Jobs quota. */
  CLAUDERUN_MAX_RUNNING_SANDBOXES: positiveInt('CLAUDERUN_MAX_RUNNING_SANDBOXES').default(DEFAULT_LIMITS.CLAUDERUN_MAX_RUNNING_SANDBOXES),
  CLAUDERUN_DAILY_TOKEN_LIMIT: budget('CLAUDERUN_DAILY_TOKEN_LIMIT', DEFAULT_LIMITS.CLAUDERUN_DAILY_TOKEN_LIMIT),
  CLAUDERUN_DAILY_COST_LIMIT_USD: budget('CLAUDERUN_DAILY_COST_LIMIT_USD', DEFAULT_LIMITS.CLAUDERUN_DAILY_COST_LIMIT_USD),
  CLAUDERUN_DAILY_EGRESS_LIMIT_BYTES: budget('CLAUDERUN_DAILY_EGRESS_LIMIT_BYTES', DEFAULT_LIMITS.CLAUDERUN_DAILY_EGRESS_LIMIT_BYTES),
  /** The secret that signs turn tokens; generated and kept in the data dir when not given. */
  CLAUDERUN_TOKEN_SECRET: optionalString.refine((v) => v === undefined || v.length >= 32, {
    error: 'CLAUDERUN_TOKEN_SECRET must be at least 32 characters',
  }),
  /** The agent's model; the default is the pinned CLI's own default. */
  CLAUDERUN_MODEL: z.string().trim().min(1).default('claude-opus-5-5'),
  /** The agent's small, fast model (side calls, Haiku-class subagents). */
  CLAUDERUN_SMALL_FAST_MODEL: z.string().trim().min(1).default('claude-haiku-5-5'),
  /** Models the model proxy lets a sandbox ask for, comma-separated; by default the two above. */
  CLAUDERUN_MODELS: optionalString.transform((v) =>
    v === undefined
      ? undefined
      : [
          ...new Set(
            v
              .split(',')
              .map((m) => m.trim())
              .filter((m) => m !== ''),
          ),
        ],
  ),
  /** The largest max_tokens of one model call (it also bounds how far one call can overshoot a budget). */
  CLAUDERUN_MAX_OUTPUT_TOKENS: positiveInt('CLAUDERUN_MAX_OUTPUT_TOKENS').max(1_000_000).default(DEFAULT_LIMITS.CLAUDERUN_MAX_OUTPUT_TOKENS),
  /** Model calls one turn may have in flight at once (the agent and its parallel subagents). */
  CLAUDERUN_MAX_MODEL_CALLS_IN_FLIGHT: positiveInt('CLAUDERUN_MAX_MODEL_CALLS_IN_FLIGHT')
    .max(1000)
    .default(DEFAULT_LIMITS.CLAUDERUN_MAX_MODEL_CALLS_IN_FLIGHT),
  /** Bytes of model requests one user's sandboxes may send per minute (each is parsed and checked). */
  CLAUDERUN_MODEL_REQUEST_BYTES_PER_MINUTE: positiveInt('CLAUDERUN_MODEL_REQUEST_BYTES_PER_MINUTE').default(
    DEFAULT_LIMITS.CLAUDERUN_MODEL_REQUEST_BYTES_PER_MINUTE,
  ),
  /**
   * Which routes this process serves: `public` (the API, the page, the sweeper), `runner` (the
   * runner's routes and the model proxy) or `all`. By default a local service serves `public` on
   * its port (sandboxes reach the runner's routes through their bridge) and a cloud one `all`.
   */
  CLAUDERUN_SERVE: z.enum(['public', 'runner', 'all'], { error: 'CLAUDERUN_SERVE must be one of: public, runner, all' }).optional(),
  /** The service account whose Google-signed ID tokens may call the sweeper (Cloud Scheduler's); unset: no sweeper route. */
  CLAUDERUN_SWEEPER_ACCOUNT: optionalString.refine((v) => v === undefined || /^[^@\s]+@[^@\s]+$/.test(v), {
    error: 'CLAUDERUN_SWEEPER_ACCOUNT must be an email',
  }),
  /** The audience those tokens must carry: the URL the scheduler calls. */
  CLAUDERUN_SWEEPER_AUDIENCE: optionalString,
  /** Where Google publishes the keys of its ID tokens; tests point it at a local key set. */
  CLAUDERUN_GOOGLE_JWKS_URL: z.url({ error: 'CLAUDERUN_GOOGLE_JWKS_URL must be a URL' }).default('https://www.googleapis.com/oauth2/v3/certs'),
  /**
   * Sandbox starts per minute across all instances (a token bucket in the store): keep it under
   * the region's Cloud Run "Job run requests per minute" quota. Default 50 with Cloud Run, no limit
   * for local sandboxes.
   */
  CLAUDERUN_RUNJOBS_PER_MINUTE: positiveInt('CLAUDERUN_RUNJOBS_PER_MINUTE').max(100_000).optional(),
  /**
   * Hosts a sandbox's tools may connect to, through the egress tunnel: comma-separated patterns
   * (`registry.npmjs.org`, `*.example.com`, `github.com:443`) and presets (npm, pypi, github).
   * Empty: none.
   */
  CLAUDERUN_EGRESS_ALLOW: egressAllowSchema('CLAUDERUN_EGRESS_ALLOW'),
  /** Tests only (refused where K_SERVICE is set): `name=address:port,...`, local servers standing in for allowed names. */
  CLAUDERUN_EGRESS_TEST_RESOLVE: testResolveSchema('CLAUDERUN_EGRESS_TEST_RESOLVE'),
  /** Connections one turn may open out, and bytes it may move through them (both ways together). */
  CLAUDERUN_EGRESS_MAX_CONNECTIONS_PER_TURN: positiveInt('CLAUDERUN_EGRESS_MAX_CONNECTIONS_PER_TURN').default(
    DEFAULT_LIMITS.CLAUDERUN_EGRESS_MAX_CONNECTIONS_PER_TURN,
  ),
  CLAUDERUN_EGRESS_MAX_BYTES_PER_TURN: positiveInt('CLAUDERUN_EGRESS_MAX_BYTES_PER_TURN').default(DEFAULT_LIMITS.CLAUDERUN_EGRESS_MAX_BYTES_PER_TURN),
  /** Where the local sandbox looks for bwrap, socat and setpriv. */
  PATH: z.string().default('/usr/local/bin:/usr/bin:/bin'),
  /**
   * Lets the settings that exist for tests (header auth, CLAUDERUN_EGRESS_TEST_RESOLVE) start
   * where K_SERVICE is set: for tests that imitate the cloud, never for a deployment.
   */
  CLAUDERUN_TEST_SETTINGS_IN_CLOUD: z.enum(['true', 'false'], { error: 'CLAUDERUN_TEST_SETTINGS_IN_CLOUD must be true or false' }).default('false'),
  /** Set by Cloud Run / Cloud Functions; header auth refuses to run there. */
  K_SERVICE: optionalString,
});

export type Env = Record<string, string | undefined>;

/** A variable this service reads: infra/ types the functions' environments by these names. */
export type SettingName = keyof typeof EnvSchema.shape;

/** Every variable this service reads; a CLAUDERUN_ variable outside them is a typo, never a default. */
export const SETTING_NAMES: readonly SettingName[] = Object.freeze(Object.keys(EnvSchema.shape) as SettingName[]);

/** How the agent is run, and what the model proxy lets it ask for. */
export interface AgentSettings {
  model: string;
  smallFastModel: string;
  /** Every model a sandbox may ask the proxy for; holds the two above. */
  models: string[];
  maxOutputTokens: number;
  maxModelCallsInFlight: number;
  modelRequestBytesPerMinute: number;
  /**
   * Whether the agent may send the CLI's experimental betas: not to Vertex AI, which refuses a
   * call with a beta it does not know (model/vertex.ts VERTEX_BETAS).
   */
  experimentalBetas: boolean;
  /**
   * How often the runner posts a text block's later deltas. Each post writes the turn's record:
   * Firestore's limit is one write a second to a document (firebase.google.com/docs/firestore/quotas,
   * "Maximum write rate to a document"), and the turn's usage is written to it too; SQLite has none.
   */
  textDeltaEveryMs: number;
}

export interface Config {
  port: number;
  dataDir: string;
  /** Where sandboxes reach the API; locally the loopback address the service listens on. */
  apiUrl: string;
  model:
    | { upstream: 'anthropic'; apiKey: string; baseUrl: string }
    | { upstream: 'vertex'; project: string; region: string; endpoint: string }
    | { upstream: 'demo' };
  agent: AgentSettings;
  store: { kind: 'sqlite' } | { kind: 'firestore'; projectId: string; emulatorHost: string | undefined };
  blobs: { kind: 'fs' } | { kind: 'gcs'; bucket: string; endpoint: URL | undefined };
  sandbox: { kind: 'local' } | { kind: 'cloudrun'; jobName: string; endpoint: URL | undefined };
  auth: {
    modes: AuthMode[];
    firebase: { projectId: string; jwksUrl: string | undefined } | undefined;
    /** Email and password sign-in on the web page: only with firebase mode and a Web API key. */
    webSignIn: { apiKey: string; authUrl: string; tokenUrl: string } | undefined;
  };
  tokenSecret: string | undefined;
  limits: {
    turnTimeoutSeconds: number;
    memoryMb: number;
    cpus: number;
    pids: number;
    diskMb: number;
    tmpMb: number;
    files: number;
    maxPromptBytes: number;
    maxStateBytes: number;
    maxFileBytes: number;
    events: EventBudget;
    openRequestsPerUser: number;
  };
  /** Sandboxes started ahead of their turns (warm-pool.ts); size 0: none. */
  warm: { size: number; idleSeconds: number };
  quota: Quota;
  /** Which routes the HTTP handler serves (see CLAUDERUN_SERVE). */
  serve: 'public' | 'runner' | 'all';
  /** Who may call the sweeper: Google ID tokens of this account, for this audience. */
  sweeper: { account: string; audience: string; jwksUrl: string } | undefined;
  /** What a sandbox's connections out may reach (createEgressPolicy), and the tunnel's per-turn caps. */
  egress: EgressSettings;
  systemPath: string;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const KNOWN_SETTINGS: ReadonlySet<string> = new Set(SETTING_NAMES);

/** The known setting nearest to `name` (by edit distance), if one is near enough to be meant. */
function nearestSetting(name: string): string | undefined {
  const distance = (a: string, b: string): number => {
    let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      const row = [i];
      for (let j = 1; j <= b.length; j++)
        row[j] = Math.min((previous[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1));
      previous = row;
    }
    return previous[b.length] ?? Number.POSITIVE_INFINITY;
  };
  const [best] = [...KNOWN_SETTINGS].map((known) => ({ known, d: distance(name, known) })).sort((x, y) => x.d - y.d);
  return best !== undefined && best.d <= 3 ? best.known : undefined;
}

export function loadConfig(env: Env): Config {
  const unknown = Object.keys(env).filter((name) => name.startsWith('CLAUDERUN_') && !KNOWN_SETTINGS.has(name));
  if (unknown.length > 0) {
    const named = unknown.map((name) => {
      const meant = nearestSetting(name);
      return meant === undefined ? name : `${name} (did you mean ${meant}?)`;
    });
    throw new ConfigError(`unknown setting${unknown.length > 1 ? 's' : ''}: ${named.join(', ')}; README's Configuration lists them`);
  }
  const parsed = EnvSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
    throw new ConfigError(`invalid configuration: ${problems.join('; ')}`);
  }
  const e = parsed.data;
  if (e.CLAUDERUN_STORE === 'firestore' && e.GOOGLE_CLOUD_PROJECT === undefined) {
    throw new ConfigError('GOOGLE_CLOUD_PROJECT: required when CLAUDERUN_STORE=firestore');
  }
  if (e.CLAUDERUN_BLOBS === 'gcs' && e.CLAUDERUN_GCS_BUCKET === undefined) {
    throw new ConfigError('CLAUDERUN_GCS_BUCKET: required when CLAUDERUN_BLOBS=gcs');
  }
  if (e.CLAUDERUN_SANDBOX === 'cloudrun' && e.CLAUDERUN_CLOUDRUN_JOB === undefined) {
    throw new ConfigError('CLAUDERUN_CLOUDRUN_JOB: required when CLAUDERUN_SANDBOX=cloudrun');
  }
  if (e.CLAUDERUN_SANDBOX === 'cloudrun' && e.CLAUDERUN_API_URL === undefined) {
    throw new ConfigError('CLAUDERUN_API_URL: required when CLAUDERUN_SANDBOX=cloudrun (the URL sandboxes reach the API at)');
  }
  const missingModels = [e.CLAUDERUN_MODEL, e.CLAUDERUN_SMALL_FAST_MODEL].filter(
    (m) => e.CLAUDERUN_MODELS !== undefined && !e.CLAUDERUN_MODELS.includes(m),
  );
  if (missingModels.length > 0) {
    throw new ConfigError(
      `CLAUDERUN_MODELS: must include the agent's models (CLAUDERUN_MODEL, CLAUDERUN_SMALL_FAST_MODEL): ${missingModels.join(', ')} missing`,
    );
  }
  const model = modelOf(e);
  const firebaseProjectId = e.FIREBASE_PROJECT_ID ?? e.GOOGLE_CLOUD_PROJECT;
  if (e.CLAUDERUN_AUTH.includes(AuthMode.enum.firebase) && firebaseProjectId === undefined) {
    throw new ConfigError('FIREBASE_PROJECT_ID: required for CLAUDERUN_AUTH=firebase (or set GOOGLE_CLOUD_PROJECT)');
  }
  if ((e.CLAUDERUN_SWEEPER_ACCOUNT === undefined) !== (e.CLAUDERUN_SWEEPER_AUDIENCE === undefined)) {
    throw new ConfigError(
      "CLAUDERUN_SWEEPER_ACCOUNT and CLAUDERUN_SWEEPER_AUDIENCE: set both (the sweeper's caller and its token's audience) or neither",
    );
  }
  if (e.CLAUDERUN_SANDBOX === 'local' && e.CLAUDERUN_SERVE !== undefined && e.CLAUDERUN_SERVE !== 'public') {
    throw new ConfigError("CLAUDERUN_SERVE: local sandboxes reach the runner's routes through their bridge; the port serves only `public`");
  }
  const inTheCloud = e.K_SERVICE !== undefined && e.CLAUDERUN_TEST_SETTINGS_IN_CLOUD !== 'true';
  if (e.CLAUDERUN_AUTH.includes(AuthMode.enum.header) && inTheCloud) {
    throw new ConfigError(
      'CLAUDERUN_AUTH: header auth trusts X-User-Id and is for local use only; it refuses to run in the cloud (K_SERVICE is set)',
    );
  }
  if (e.CLAUDERUN_EGRESS_TEST_RESOLVE.size > 0 && inTheCloud) {
    throw new ConfigError(
      'CLAUDERUN_EGRESS_TEST_RESOLVE: it sends allowed names to unchecked addresses and is for tests only; it refuses to run in the cloud (K_SERVICE is set)',
    );
  }
  const unallowed = [...e.CLAUDERUN_EGRESS_TEST_RESOLVE.keys()].filter((name) => !allowsName(e.CLAUDERUN_EGRESS_ALLOW, name));
  if (unallowed.length > 0) {
    throw new ConfigError(`CLAUDERUN_EGRESS_TEST_RESOLVE: maps names CLAUDERUN_EGRESS_ALLOW does not allow: ${unallowed.join(', ')}`);
  }
  return {
    port: e.PORT,
    dataDir: path.resolve(e.CLAUDERUN_DATA_DIR),
    apiUrl: (e.CLAUDERUN_API_URL ?? `http://127.0.0.1:${e.PORT}`).replace(/\/+$/, ''),
    model,
    agent: {
      model: e.CLAUDERUN_MODEL,
      smallFastModel: e.CLAUDERUN_SMALL_FAST_MODEL,
      models: e.CLAUDERUN_MODELS ?? [...new Set([e.CLAUDERUN_MODEL, e.CLAUDERUN_SMALL_FAST_MODEL])],
      maxOutputTokens: e.CLAUDERUN_MAX_OUTPUT_TOKENS,
      maxModelCallsInFlight: e.CLAUDERUN_MAX_MODEL_CALLS_IN_FLIGHT,
      modelRequestBytesPerMinute: e.CLAUDERUN_MODEL_REQUEST_BYTES_PER_MINUTE,
      experimentalBetas: model.upstream !== 'vertex',
      textDeltaEveryMs: e.CLAUDERUN_STORE === 'firestore' ? 1000 : 100,
    },
    store:
      e.CLAUDERUN_STORE === 'firestore'
        ? { kind: 'firestore', projectId: e.GOOGLE_CLOUD_PROJECT ?? '', emulatorHost: e.FIRESTORE_EMULATOR_HOST }
        : { kind: 'sqlite' },
    blobs:
      e.CLAUDERUN_BLOBS === 'gcs'
        ? {
            kind: 'gcs',
            bucket: e.CLAUDERUN_GCS_BUCKET ?? '',
            endpoint: e.CLAUDERUN_GCS_ENDPOINT === undefined ? undefined : new URL(e.CLAUDERUN_GCS_ENDPOINT),
          }
        : { kind: 'fs' },
    sandbox:
      e.CLAUDERUN_SANDBOX === 'cloudrun'
        ? {
            kind: 'cloudrun',
            jobName: e.CLAUDERUN_CLOUDRUN_JOB ?? '',
            endpoint: e.CLAUDERUN_CLOUDRUN_ENDPOINT === undefined ? undefined : new URL(e.CLAUDERUN_CLOUDRUN_ENDPOINT),
          }
        : { kind: 'local' },
    auth: {
      modes: e.CLAUDERUN_AUTH,
      firebase:
        e.CLAUDERUN_AUTH.includes(AuthMode.enum.firebase) && firebaseProjectId !== undefined
          ? { projectId: firebaseProjectId, jwksUrl: e.CLAUDERUN_FIREBASE_JWKS_URL }
          : undefined,
      webSignIn:
        e.CLAUDERUN_AUTH.includes(AuthMode.enum.firebase) && e.FIREBASE_WEB_API_KEY !== undefined
          ? webSignInOf(e.FIREBASE_WEB_API_KEY, e.CLAUDERUN_FIREBASE_AUTH_URL, e.CLAUDERUN_FIREBASE_TOKEN_URL)
          : undefined,
    },
    tokenSecret: e.CLAUDERUN_TOKEN_SECRET,
    limits: {
      turnTimeoutSeconds: e.CLAUDERUN_TURN_TIMEOUT_SECONDS,
      memoryMb: e.CLAUDERUN_SANDBOX_MEMORY_MB,
      cpus: e.CLAUDERUN_SANDBOX_CPUS,
      pids: e.CLAUDERUN_SANDBOX_PIDS,
      diskMb: e.CLAUDERUN_SANDBOX_DISK_MB,
      tmpMb: e.CLAUDERUN_SANDBOX_TMP_MB,
      files: e.CLAUDERUN_SANDBOX_FILES,
      maxPromptBytes: e.CLAUDERUN_MAX_PROMPT_BYTES,
      maxStateBytes: e.CLAUDERUN_MAX_STATE_BYTES,
      maxFileBytes: e.CLAUDERUN_MAX_FILE_BYTES,
      events: { maxEvents: e.CLAUDERUN_MAX_EVENTS_PER_TURN, maxBytes: e.CLAUDERUN_MAX_EVENT_BYTES_PER_TURN },
      openRequestsPerUser: e.CLAUDERUN_MAX_OPEN_REQUESTS_PER_USER,
    },
    warm: {
      size: e.CLAUDERUN_WARM_SANDBOXES ?? (e.CLAUDERUN_SANDBOX === 'cloudrun' ? DEFAULT_LIMITS.CLAUDERUN_WARM_SANDBOXES : LOCAL_WARM_SANDBOXES),
      idleSeconds:
        e.CLAUDERUN_WARM_SANDBOX_IDLE_SECONDS ??
        (e.CLAUDERUN_SANDBOX === 'cloudrun' ? DEFAULT_LIMITS.CLAUDERUN_WARM_SANDBOX_IDLE_SECONDS : LOCAL_WARM_IDLE_SECONDS),
    },
    quota: {
      runningTurnsPerUser: e.CLAUDERUN_MAX_RUNNING_TURNS_PER_USER,
      turnsPerMinute: e.CLAUDERUN_MAX_TURNS_PER_MINUTE,
      fileChangesPerMinute: e.CLAUDERUN_MAX_FILE_CHANGES_PER_MINUTE,
      runningSandboxes: e.CLAUDERUN_MAX_RUNNING_SANDBOXES,
      sandboxStartsPerMinute:
        e.CLAUDERUN_RUNJOBS_PER_MINUTE ??
        (e.CLAUDERUN_SANDBOX === 'cloudrun' ? DEFAULT_LIMITS.CLAUDERUN_RUNJOBS_PER_MINUTE : Number.POSITIVE_INFINITY),
      dailyTokens: e.CLAUDERUN_DAILY_TOKEN_LIMIT === null ? null : Math.floor(e.CLAUDERUN_DAILY_TOKEN_LIMIT),
      dailyCostUsd: e.CLAUDERUN_DAILY_COST_LIMIT_USD,
      dailyEgressBytes: e.CLAUDERUN_DAILY_EGRESS_LIMIT_BYTES === null ? null : Math.floor(e.CLAUDERUN_DAILY_EGRESS_LIMIT_BYTES),
    },
    serve: e.CLAUDERUN_SERVE ?? (e.CLAUDERUN_SANDBOX === 'local' ? 'public' : 'all'),
    sweeper:
      e.CLAUDERUN_SWEEPER_ACCOUNT !== undefined && e.CLAUDERUN_SWEEPER_AUDIENCE !== undefined
        ? { account: e.CLAUDERUN_SWEEPER_ACCOUNT, audience: e.CLAUDERUN_SWEEPER_AUDIENCE, jwksUrl: e.CLAUDERUN_GOOGLE_JWKS_URL }
        : undefined,
    egress: {
      allow: e.CLAUDERUN_EGRESS_ALLOW,
      testResolve: e.CLAUDERUN_EGRESS_TEST_RESOLVE,
      maxConnectionsPerTurn: e.CLAUDERUN_EGRESS_MAX_CONNECTIONS_PER_TURN,
      maxBytesPerTurn: e.CLAUDERUN_EGRESS_MAX_BYTES_PER_TURN,
    },
    systemPath: e.PATH,
  };
}

/**
 * Vertex AI's base URL for a location: `https://REGION-aiplatform.googleapis.com`, for `global`
 * `https://aiplatform.googleapis.com` (cloud.google.com/vertex-ai/generative-ai/docs/partner-models/claude/use-claude),
 * and for the multi-regions `us` and `eu` `https://aiplatform.us.rep.googleapis.com` and
 * `https://aiplatform.eu.rep.googleapis.com` (Vertex AI's locations page, "multi-region endpoints").
 */
export function vertexEndpoint(region: string): string {
  if (region === 'global') return 'https://aiplatform.googleapis.com';
  if (region === 'us' || region === 'eu') return `https://aiplatform.${region}.rep.googleapis.com`;
  return `https://${region}-aiplatform.googleapis.com`;
}

function modelOf(e: z.infer<typeof EnvSchema>): Config['model'] {
  const upstream = e.CLAUDERUN_MODEL_UPSTREAM ?? (e.ANTHROPIC_API_KEY === undefined ? 'demo' : 'anthropic');
  // A Vertex setting without Vertex is a mistake to point out, not a setting to ignore.
  const vertexOnly = (['CLAUDERUN_VERTEX_PROJECT', 'CLAUDERUN_VERTEX_REGION', 'CLAUDERUN_VERTEX_ENDPOINT'] as const).filter(
    (name) => e[name] !== undefined,
  );
  if (upstream !== 'vertex' && vertexOnly.length > 0) {
    throw new ConfigError(`${vertexOnly.join(', ')}: used only with CLAUDERUN_MODEL_UPSTREAM=vertex (the model upstream is ${upstream})`);
  }
  if (upstream === 'anthropic') {
    if (e.ANTHROPIC_API_KEY === undefined) throw new ConfigError('ANTHROPIC_API_KEY: required when CLAUDERUN_MODEL_UPSTREAM=anthropic');
    return { upstream, apiKey: e.ANTHROPIC_API_KEY, baseUrl: e.ANTHROPIC_BASE_URL.replace(/\/+$/, '') };
  }
  if (upstream === 'demo') return { upstream };
  // Vertex AI authenticates with the service's Google credentials: a key set beside it would never be used.
  if (e.ANTHROPIC_API_KEY !== undefined) {
    throw new ConfigError('ANTHROPIC_API_KEY: not used with CLAUDERUN_MODEL_UPSTREAM=vertex (Vertex AI takes Google credentials); unset it');
  }
  if (e.CLAUDERUN_VERTEX_PROJECT === undefined) throw new ConfigError('CLAUDERUN_VERTEX_PROJECT: required when CLAUDERUN_MODEL_UPSTREAM=vertex');
  if (e.CLAUDERUN_VERTEX_REGION === undefined) {
    throw new ConfigError('CLAUDERUN_VERTEX_REGION: required when CLAUDERUN_MODEL_UPSTREAM=vertex (a region that offers the models, or global)');
  }
  return {
    upstream,
    project: e.CLAUDERUN_VERTEX_PROJECT,
    region: e.CLAUDERUN_VERTEX_REGION,
    endpoint: (e.CLAUDERUN_VERTEX_ENDPOINT ?? vertexEndpoint(e.CLAUDERUN_VERTEX_REGION)).replace(/\/+$/, ''),
  };
}
