import * as pulumi from '@pulumi/pulumi';
import { beforeAll, describe, expect, test } from 'vitest';
import { DEFAULT_LIMITS, loadConfig, SETTING_NAMES, type Config, type Env } from '../../functions/src/config.js';
import { names, parseSettings } from '../../infra/config.js';
import { functionEnvironment, PLATFORM_VARIABLES, type FunctionEnvironment, type Serve } from '../../infra/function-roles.js';
import { promiseOf, runProgram, writeTestIndexes, type ProgramRun, type Recorded } from './pulumi-mocks.js';

/**
 * What the program deploys is what the service accepts: each function's environment, as the
 * program gives it (the mocks' recorded resources), is loaded by the service's own loadConfig. A
 * name the service does not know, or a value it refuses, fails here rather than at a cold start.
 */

const PROJECT = 'clauderun-test';
const REGION = 'europe-west1';

let run: ProgramRun;

beforeAll(async () => {
  run = await runProgram({ 'gcp:project': PROJECT, 'gcp:region': REGION, 'clauderun:firestoreIndexesFile': writeTestIndexes() });
});

/**
 * Secret Manager references stand in as placeholder values (the token secret long enough for the
 * service); the platform adds what Cloud Run sets in every container, K_SERVICE among them.
 */
function deployedEnvironment(fn: Recorded): Env {
  const config = fn.inputs.serviceConfig;
  const secrets = (config.secretEnvironmentVariables as { key: string }[]).map(({ key }) => [key, `placeholder-${key}-`.padEnd(48, 'x')]);
  return {
    ...(config.environmentVariables as Record<string, string>),
    ...Object.fromEntries(secrets),
    PORT: '8080',
    K_SERVICE: fn.inputs.name as string,
    K_REVISION: `${fn.inputs.name}-00001-abc`,
    K_CONFIGURATION: fn.inputs.name as string,
    FUNCTION_TARGET: 'clauderun',
    FUNCTION_SIGNATURE_TYPE: 'http',
  };
}

const PLATFORM_SET = ['PORT', 'K_SERVICE', 'K_REVISION', 'K_CONFIGURATION', 'FUNCTION_TARGET', 'FUNCTION_SIGNATURE_TYPE'];

const functions: { logical: string; serve: Serve }[] = [
  { logical: 'api-function', serve: 'public' },
  { logical: 'runner-function', serve: 'runner' },
];

describe.each(functions)("the $serve function's environment, through the service's loadConfig", ({ logical, serve }) => {
  // Loaded in every test rather than once: a refusal then fails each test, naming its problem.
  const env = () => deployedEnvironment(run.named(logical));
  const config = (): Config => loadConfig(env());

  test('names only variables the service reads, or the runtime does', () => {
    // loadConfig refuses an unknown CLAUDERUN_ name itself; any other it would silently ignore.
    const known = new Set<string>([...SETTING_NAMES, ...PLATFORM_VARIABLES, ...PLATFORM_SET]);
    expect(Object.keys(env()).filter((name) => !known.has(name))).toEqual([]);
  });

  test(`selects Firestore, Cloud Storage and Cloud Run, and serves the ${serve} routes`, () => {
    const loaded = config();
    expect(loaded.store).toEqual({ kind: 'firestore', projectId: PROJECT, emulatorHost: undefined });
    expect(loaded.blobs).toEqual({ kind: 'gcs', bucket: run.outputs.bucketName, endpoint: undefined });
    expect(loaded.sandbox).toEqual({
      kind: 'cloudrun',
      jobName: `projects/${PROJECT}/locations/${REGION}/jobs/${run.outputs.jobName}`,
      endpoint: undefined,
    });
    expect(loaded.serve).toBe(serve);
    expect(loaded.apiUrl).toBe(run.outputs.runnerUrl);
    expect(loaded.auth.modes).toEqual(['apikey']);
  });

  test("a stack that sets no limit gets the service's default limits", () => {
    const loaded = config();
    expect(loaded.limits).toMatchObject({
      turnTimeoutSeconds: DEFAULT_LIMITS.CLAUDERUN_TURN_TIMEOUT_SECONDS,
      memoryMb: DEFAULT_LIMITS.CLAUDERUN_SANDBOX_MEMORY_MB,
      cpus: DEFAULT_LIMITS.CLAUDERUN_SANDBOX_CPUS,
      openRequestsPerUser: DEFAULT_LIMITS.CLAUDERUN_MAX_OPEN_REQUESTS_PER_USER,
    });
    expect(loaded.quota).toEqual({
      runningTurnsPerUser: DEFAULT_LIMITS.CLAUDERUN_MAX_RUNNING_TURNS_PER_USER,
      turnsPerMinute: DEFAULT_LIMITS.CLAUDERUN_MAX_TURNS_PER_MINUTE,
      fileChangesPerMinute: DEFAULT_LIMITS.CLAUDERUN_MAX_FILE_CHANGES_PER_MINUTE,
      runningSandboxes: DEFAULT_LIMITS.CLAUDERUN_MAX_RUNNING_SANDBOXES,
      sandboxStartsPerMinute: DEFAULT_LIMITS.CLAUDERUN_RUNJOBS_PER_MINUTE,
      dailyTokens: DEFAULT_LIMITS.CLAUDERUN_DAILY_TOKEN_LIMIT,
      dailyCostUsd: DEFAULT_LIMITS.CLAUDERUN_DAILY_COST_LIMIT_USD,
      dailyEgressBytes: DEFAULT_LIMITS.CLAUDERUN_DAILY_EGRESS_LIMIT_BYTES,
    });
  });

  test(serve === 'public' ? 'holds no model key, and lets the sweeper in' : 'holds the model key, and has no sweeper route', () => {
    const loaded = config();
    expect(loaded.model.upstream).toBe(serve === 'runner' ? 'anthropic' : 'demo');
    expect(loaded.sweeper === undefined).toBe(serve === 'runner');
  });
});

/** The environment functionEnvironment makes (the job's name is an Output even from plain inputs), as values. */
async function resolved(env: FunctionEnvironment): Promise<Env> {
  const entries = await Promise.all(Object.entries(env).map(async ([name, value]) => [name, await promiseOf(pulumi.output(value))] as const));
  return Object.fromEntries(entries);
}

describe('every stack setting the service shares reaches it as the service reads it', () => {
  const refs = { jobName: 'clauderun-sandbox', stateBucket: 'b', runnerUrl: 'http://10.8.0.2', sweeperEmail: 'sweeper@p.iam.gserviceaccount.com' };
  const settings = parseSettings({
    'gcp:project': PROJECT,
    'gcp:region': REGION,
    'clauderun:authMode': 'firebase',
    'clauderun:turnTimeoutSeconds': '3540',
    'clauderun:sandboxMemoryMb': '8192',
    'clauderun:sandboxCpus': '2',
    'clauderun:maxRunningSandboxes': '1000',
    'clauderun:runJobsPerMinute': '7',
    'clauderun:warmSandboxes': '3',
    'clauderun:warmSandboxIdleSeconds': '240',
    'clauderun:maxRunningTurnsPerUser': '3',
    'clauderun:maxTurnsPerMinute': '40',
    'clauderun:maxOpenRequestsPerUser': '5',
    'clauderun:dailyTokenLimit': '1000000',
    'clauderun:dailyCostLimitUsd': '2.5',
    'clauderun:dailyEgressLimitBytes': '1000000000',
    'clauderun:egressAllow': 'npm, *.example.com:8443',
  });

  test.each<Serve>(['public', 'runner'])('%s', async (serve) => {
    const env = await resolved(functionEnvironment(settings, names(settings), serve, refs));
    const config = loadConfig({ ...env, K_SERVICE: 'clauderun' });
    expect(config.auth.modes).toEqual(['firebase']);
    expect(config.limits).toMatchObject({ turnTimeoutSeconds: 3540, memoryMb: 8192, cpus: 2 });
    expect(config.quota).toEqual({
      runningTurnsPerUser: 3,
      turnsPerMinute: 40,
      fileChangesPerMinute: DEFAULT_LIMITS.CLAUDERUN_MAX_FILE_CHANGES_PER_MINUTE,
      runningSandboxes: 1000,
      sandboxStartsPerMinute: 7,
      dailyTokens: 1_000_000,
      dailyCostUsd: 2.5,
      dailyEgressBytes: 1_000_000_000,
    });
    // Both fill the pool or wait on it: they must agree on it.
    expect(config.warm).toEqual({ size: 3, idleSeconds: 240 });
    if (serve === 'public') expect(config.limits.openRequestsPerUser).toBe(5);
    // The runner judges the sandboxes' connections out; the public function opens none.
    expect(config.egress.allow.map((rule) => `${rule.wildcard ? '*.' : ''}${rule.name}:${rule.ports.join('/')}`)).toEqual(
      serve === 'runner' ? ['registry.npmjs.org:443', '*.example.com:8443'] : [],
    );
  });

  test('a stack that allows no egress gives the runner none', async () => {
    const none = parseSettings({ 'gcp:project': PROJECT, 'gcp:region': REGION });
    const env = await resolved(functionEnvironment(none, names(none), 'runner', refs));
    expect(env).not.toHaveProperty('CLAUDERUN_EGRESS_ALLOW');
    expect(loadConfig({ ...env, K_SERVICE: 'clauderun' }).egress.allow).toEqual([]);
  });

  test('a budget of none is no limit', async () => {
    const unlimited = parseSettings({ 'gcp:project': PROJECT, 'gcp:region': REGION, 'clauderun:dailyCostLimitUsd': 'none' });
    const env = await resolved(functionEnvironment(unlimited, names(unlimited), 'runner', refs));
    expect(loadConfig({ ...env, K_SERVICE: 'clauderun' }).quota).toMatchObject({ dailyTokens: null, dailyCostUsd: null });
  });
});
