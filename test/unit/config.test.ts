import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, DEFAULT_LIMITS, loadConfig, SETTING_NAMES } from '../../functions/src/config.js';

describe('config', () => {
  it('has working defaults on an empty environment: port 8080, demo model, 10 min, 1 GiB', () => {
    const config = loadConfig({});
    expect(config.port).toBe(8080);
    expect(config.dataDir).toBe(path.resolve('.clauderun'));
    expect(config.model).toEqual({ upstream: 'demo' });
    expect(config.store).toEqual({ kind: 'sqlite' });
    expect(config.blobs).toEqual({ kind: 'fs' });
    expect(config.sandbox).toEqual({ kind: 'local' });
    expect(config.limits).toMatchObject({ turnTimeoutSeconds: 600, memoryMb: 1024, cpus: 1, pids: 256, maxPromptBytes: 102400 });
    expect(config.limits.maxStateBytes).toBe(25 * 1024 * 1024);
  });

  it('serves the public routes locally and everything with Cloud Run, whose sandbox starts it rate-limits', () => {
    expect(loadConfig({})).toMatchObject({ serve: 'public', sweeper: undefined, quota: { sandboxStartsPerMinute: Number.POSITIVE_INFINITY } });
    const cloud = { CLAUDERUN_SANDBOX: 'cloudrun', CLAUDERUN_CLOUDRUN_JOB: 'projects/p/locations/l/jobs/j', CLAUDERUN_API_URL: 'http://10.0.0.2' };
    expect(loadConfig(cloud)).toMatchObject({ serve: 'all', quota: { sandboxStartsPerMinute: 50 } });
    expect(loadConfig({ ...cloud, CLAUDERUN_SERVE: 'runner', CLAUDERUN_RUNJOBS_PER_MINUTE: '120' })).toMatchObject({
      serve: 'runner',
      quota: { sandboxStartsPerMinute: 120 },
    });
  });

  it('refuses a CLAUDERUN_ setting it does not know, naming the one meant: a typo never falls back to a default', () => {
    expect(() => loadConfig({ CLAUDERUN_MAX_TURN_PER_MINUTE: '5' })).toThrow(
      /unknown setting: CLAUDERUN_MAX_TURN_PER_MINUTE \(did you mean CLAUDERUN_MAX_TURNS_PER_MINUTE\?\)/,
    );
    expect(() => loadConfig({ CLAUDERUN_FLAVOUR: 'mint' })).toThrow(/unknown setting: CLAUDERUN_FLAVOUR;/);
    expect(loadConfig({ HOME: '/root', NODE_ENV: 'production' }).port).toBe(8080);
  });

  it('names every variable it reads, and gives each default limit under the variable that changes it', () => {
    expect(SETTING_NAMES).toEqual(expect.arrayContaining(['PORT', 'CLAUDERUN_STORE', 'GOOGLE_CLOUD_PROJECT', 'K_SERVICE']));
    for (const name of Object.keys(DEFAULT_LIMITS)) expect(SETTING_NAMES, name).toContain(name);
    const defaults = loadConfig({});
    expect(defaults.limits).toMatchObject({
      turnTimeoutSeconds: DEFAULT_LIMITS.CLAUDERUN_TURN_TIMEOUT_SECONDS,
      files: DEFAULT_LIMITS.CLAUDERUN_SANDBOX_FILES,
    });
    expect(defaults.quota).toMatchObject({ runningTurnsPerUser: DEFAULT_LIMITS.CLAUDERUN_MAX_RUNNING_TURNS_PER_USER, dailyTokens: null });
  });

  it('uses the real model API when a key is set', () => {
    const config = loadConfig({ ANTHROPIC_API_KEY: 'sk-ant-x', ANTHROPIC_BASE_URL: 'http://127.0.0.1:9999/' });
    expect(config.model).toEqual({ upstream: 'anthropic', apiKey: 'sk-ant-x', baseUrl: 'http://127.0.0.1:9999' });
  });

  it('uses Claude on Vertex AI when asked, with no model key: the regional endpoint, the global one, or a stand-in', () => {
    const vertex = { CLAUDERUN_MODEL_UPSTREAM: 'vertex', CLAUDERUN_VERTEX_PROJECT: 'my-project-1' };
    expect(loadConfig({ ...vertex, CLAUDERUN_VERTEX_REGION: 'us-east5' }).model).toEqual({
      upstream: 'vertex',
      project: 'my-project-1',
      region: 'us-east5',
      endpoint: 'https://us-east5-aiplatform.googleapis.com',
    });
    expect(loadConfig({ ...vertex, CLAUDERUN_VERTEX_REGION: 'global' }).model).toMatchObject({ endpoint: 'https://aiplatform.googleapis.com' });
    expect(loadConfig({ ...vertex, CLAUDERUN_VERTEX_REGION: 'eu' }).model).toMatchObject({ endpoint: 'https://aiplatform.eu.rep.googleapis.com' });
    expect(loadConfig({ ...vertex, CLAUDERUN_VERTEX_REGION: 'us' }).model).toMatchObject({ endpoint: 'https://aiplatform.us.rep.googleapis.com' });
    expect(loadConfig({ ...vertex, CLAUDERUN_VERTEX_REGION: 'global', CLAUDERUN_VERTEX_ENDPOINT: 'http://127.0.0.1:9998/' }).model).toMatchObject({
      endpoint: 'http://127.0.0.1:9998',
    });
    expect(loadConfig({ CLAUDERUN_MODEL_UPSTREAM: 'demo', ANTHROPIC_API_KEY: 'sk-ant-x' }).model).toEqual({ upstream: 'demo' });
  });

  it.each([
    [{ PORT: 'eighty' }, /PORT/],
    [{ PORT: '70000' }, /PORT/],
    [{ CLAUDERUN_TURN_TIMEOUT_SECONDS: '-5' }, /CLAUDERUN_TURN_TIMEOUT_SECONDS/],
    [{ CLAUDERUN_SANDBOX_MEMORY_MB: '100' }, /CLAUDERUN_SANDBOX_MEMORY_MB/],
    [{ CLAUDERUN_STORE: 'postgres' }, /CLAUDERUN_STORE must be one of: sqlite, firestore/],
    [{ CLAUDERUN_STORE: 'firestore' }, /GOOGLE_CLOUD_PROJECT: required/],
    [{ CLAUDERUN_BLOBS: 'gcs' }, /CLAUDERUN_GCS_BUCKET: required/],
    [{ CLAUDERUN_GCS_ENDPOINT: 'nope' }, /CLAUDERUN_GCS_ENDPOINT must be a URL/],
    [{ CLAUDERUN_SANDBOX: 'chroot' }, /CLAUDERUN_SANDBOX/],
    [{ ANTHROPIC_BASE_URL: 'not a url' }, /ANTHROPIC_BASE_URL/],
    [{ CLAUDERUN_TOKEN_SECRET: 'short' }, /CLAUDERUN_TOKEN_SECRET/],
    [{ CLAUDERUN_SERVE: 'everything' }, /CLAUDERUN_SERVE must be one of: public, runner, all/],
    [{ CLAUDERUN_SERVE: 'runner' }, /CLAUDERUN_SERVE: local sandboxes reach the runner's routes through their bridge/],
    [{ CLAUDERUN_SWEEPER_ACCOUNT: 'sweeper@p.iam.gserviceaccount.com' }, /set both/],
    [{ CLAUDERUN_SWEEPER_ACCOUNT: 'not-an-email', CLAUDERUN_SWEEPER_AUDIENCE: 'https://x/ops/sweep' }, /CLAUDERUN_SWEEPER_ACCOUNT must be an email/],
    [{ CLAUDERUN_RUNJOBS_PER_MINUTE: '0' }, /CLAUDERUN_RUNJOBS_PER_MINUTE/],
    [{ CLAUDERUN_MODEL_UPSTREAM: 'bedrock' }, /CLAUDERUN_MODEL_UPSTREAM must be one of: anthropic, vertex, demo/],
    [{ CLAUDERUN_MODEL_UPSTREAM: 'anthropic' }, /ANTHROPIC_API_KEY: required when CLAUDERUN_MODEL_UPSTREAM=anthropic/],
    [{ CLAUDERUN_MODEL_UPSTREAM: 'vertex', CLAUDERUN_VERTEX_REGION: 'global' }, /CLAUDERUN_VERTEX_PROJECT: required/],
    [{ CLAUDERUN_MODEL_UPSTREAM: 'vertex', CLAUDERUN_VERTEX_PROJECT: 'my-project-1' }, /CLAUDERUN_VERTEX_REGION: required/],
    [
      {
        CLAUDERUN_MODEL_UPSTREAM: 'vertex',
        CLAUDERUN_VERTEX_PROJECT: 'my-project-1',
        CLAUDERUN_VERTEX_REGION: 'global',
        ANTHROPIC_API_KEY: 'sk-ant-x',
      },
      /ANTHROPIC_API_KEY: not used with CLAUDERUN_MODEL_UPSTREAM=vertex/,
    ],
    [{ CLAUDERUN_VERTEX_PROJECT: 'a/b' }, /CLAUDERUN_VERTEX_PROJECT must be a project ID/],
    [
      { ANTHROPIC_API_KEY: 'sk-ant-x', CLAUDERUN_VERTEX_PROJECT: 'my-project-1', CLAUDERUN_VERTEX_REGION: 'global' },
      /CLAUDERUN_VERTEX_PROJECT, CLAUDERUN_VERTEX_REGION: used only with CLAUDERUN_MODEL_UPSTREAM=vertex \(the model upstream is anthropic\)/,
    ],
    [{ CLAUDERUN_VERTEX_REGION: 'us-east5/../x' }, /CLAUDERUN_VERTEX_REGION must be a region name/],
    [{ CLAUDERUN_VERTEX_ENDPOINT: 'nope' }, /CLAUDERUN_VERTEX_ENDPOINT must be an https URL/],
    // The access token would travel in the clear to another machine.
    [{ CLAUDERUN_VERTEX_ENDPOINT: 'http://vertex.example.com' }, /CLAUDERUN_VERTEX_ENDPOINT must be an https URL/],
    [{ CLAUDERUN_VERTEX_ENDPOINT: 'http://127.0.0.1.example.com/' }, /CLAUDERUN_VERTEX_ENDPOINT must be an https URL/],
  ])('refuses %j naming the variable', (env, message) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(message);
  });

  it('needs a job and the API URL for the Cloud Run sandbox', () => {
    expect(() => loadConfig({ CLAUDERUN_SANDBOX: 'cloudrun' })).toThrow(/CLAUDERUN_CLOUDRUN_JOB: required/);
    expect(() => loadConfig({ CLAUDERUN_SANDBOX: 'cloudrun', CLAUDERUN_CLOUDRUN_JOB: 'my-job' })).toThrow(/projects\/P\/locations\/L\/jobs\/J/);
    const job = 'projects/p/locations/europe-west1/jobs/sandbox';
    expect(() => loadConfig({ CLAUDERUN_SANDBOX: 'cloudrun', CLAUDERUN_CLOUDRUN_JOB: job })).toThrow(/CLAUDERUN_API_URL: required/);
    const config = loadConfig({ CLAUDERUN_SANDBOX: 'cloudrun', CLAUDERUN_CLOUDRUN_JOB: job, CLAUDERUN_API_URL: 'https://api.example.test/' });
    expect(config.sandbox).toEqual({ kind: 'cloudrun', jobName: job, endpoint: undefined });
    expect(config.apiUrl).toBe('https://api.example.test');
  });

  it('takes one auth mode or several', () => {
    expect(loadConfig({}).auth).toEqual({ modes: ['header'], firebase: undefined });
    expect(loadConfig({ CLAUDERUN_AUTH: 'apikey, firebase', GOOGLE_CLOUD_PROJECT: 'p1' }).auth).toEqual({
      modes: ['apikey', 'firebase'],
      firebase: { projectId: 'p1', jwksUrl: undefined },
    });
    expect(() => loadConfig({ CLAUDERUN_AUTH: 'apikey,magic' })).toThrow(/CLAUDERUN_AUTH must list modes out of/);
    expect(() => loadConfig({ CLAUDERUN_AUTH: ' , ' })).toThrow(/at least one mode/);
    expect(() => loadConfig({ CLAUDERUN_AUTH: 'firebase' })).toThrow(/FIREBASE_PROJECT_ID: required/);
    expect(loadConfig({ CLAUDERUN_AUTH: 'apikey', K_SERVICE: 'clauderun' }).auth.modes).toEqual(['apikey']);
    expect(() => loadConfig({ CLAUDERUN_AUTH: 'apikey,header', K_SERVICE: 'clauderun' })).toThrow(/refuses to run in the cloud/);
  });

  it('has fair-use limits by default; budgets take a number or none', () => {
    expect(loadConfig({}).quota).toEqual({
      runningTurnsPerUser: 2,
      turnsPerMinute: 10,
      fileChangesPerMinute: 30,
      runningSandboxes: 50,
      sandboxStartsPerMinute: Number.POSITIVE_INFINITY,
      dailyTokens: null,
      dailyCostUsd: 10,
      dailyEgressBytes: 2 * 1024 ** 3,
    });
    const set = loadConfig({
      CLAUDERUN_DAILY_TOKEN_LIMIT: '2000000',
      CLAUDERUN_DAILY_COST_LIMIT_USD: 'none',
      CLAUDERUN_MAX_RUNNING_SANDBOXES: '5',
      CLAUDERUN_DAILY_EGRESS_LIMIT_BYTES: 'none',
    });
    expect(set.quota).toMatchObject({ dailyTokens: 2_000_000, dailyCostUsd: null, runningSandboxes: 5, dailyEgressBytes: null });
    expect(() => loadConfig({ CLAUDERUN_DAILY_EGRESS_LIMIT_BYTES: '0' })).toThrow(
      /CLAUDERUN_DAILY_EGRESS_LIMIT_BYTES must be a positive number or none/,
    );
    expect(() => loadConfig({ CLAUDERUN_DAILY_COST_LIMIT_USD: '-1' })).toThrow(/CLAUDERUN_DAILY_COST_LIMIT_USD must be a positive number or none/);
    expect(() => loadConfig({ CLAUDERUN_DAILY_TOKEN_LIMIT: 'lots' })).toThrow(/CLAUDERUN_DAILY_TOKEN_LIMIT must be a positive number or none/);
    expect(() => loadConfig({ CLAUDERUN_MAX_TURNS_PER_MINUTE: '0' })).toThrow(/CLAUDERUN_MAX_TURNS_PER_MINUTE must be positive/);
  });

  it('refuses header auth in the cloud', () => {
    expect(() => loadConfig({ K_SERVICE: 'clauderun' })).toThrow(/header auth .* refuses to run in the cloud/);
    expect(() => loadConfig({ K_SERVICE: 'clauderun', CLAUDERUN_TEST_SETTINGS_IN_CLOUD: 'yes' })).toThrow(/must be true or false/);
    expect(loadConfig({ K_SERVICE: 'clauderun', CLAUDERUN_TEST_SETTINGS_IN_CLOUD: 'true' }).auth.modes).toEqual(['header']);
  });
});
