import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { CONFIG_KEYS, names, parseSettings, type RawSettings } from '../../infra/config.js';

const base: RawSettings = { 'gcp:project': 'my-project-1', 'gcp:region': 'europe-west1' };

describe('stack settings', () => {
  test('defaults: API keys, 1 CPU, 1 GiB, 10 minutes, protected', () => {
    expect(parseSettings(base)).toEqual({
      project: 'my-project-1',
      region: 'europe-west1',
      firestoreLocation: 'europe-west1',
      modelUpstream: 'anthropic',
      vertexRegion: 'global',
      authMode: 'apikey',
      turnTimeoutSeconds: 600,
      sandboxMemoryMb: 1024,
      sandboxCpus: 1,
      apiMaxInstances: 10,
      runnerMaxInstances: 20,
      maxRunningSandboxes: 50,
      runJobsPerMinute: 50,
      warmSandboxes: 0,
      warmSandboxIdleSeconds: 300,
      maxRunningTurnsPerUser: 2,
      maxTurnsPerMinute: 10,
      maxOpenRequestsPerUser: 20,
      dailyTokenLimit: null,
      dailyCostLimitUsd: 10,
      dailyEgressLimitBytes: 2 * 1024 ** 3,
      egressAllow: '',
      deletedStateRetentionDays: 7,
      firestoreIndexesFile: 'firestore.indexes.json',
      protect: true,
    });
  });

  test('the model: the Claude API (a key) or Claude on Vertex AI, in the global location or a region', () => {
    const vertex = {
      ...base,
      'clauderun:modelUpstream': 'vertex',
      'clauderun:model': 'claude-sonnet-4-5@20250929',
      'clauderun:smallFastModel': 'claude-haiku-4-5@20251001',
    };
    expect(parseSettings(vertex)).toMatchObject({ modelUpstream: 'vertex', vertexRegion: 'global' });
    expect(parseSettings({ ...vertex, 'clauderun:vertexRegion': 'us-east5' })).toMatchObject({
      vertexRegion: 'us-east5',
    });
    expect(() => parseSettings({ ...base, 'clauderun:modelUpstream': 'bedrock' })).toThrow(
      /clauderun:modelUpstream must be one of: anthropic, vertex/,
    );
    expect(() => parseSettings({ ...base, 'clauderun:vertexRegion': 'us/east5' })).toThrow(
      /clauderun:vertexRegion must be global, a multi-region \(us, eu\) or a region/,
    );
  });

  test("the agent's models: none (the service's defaults), or the two and the list a conversation may choose from; Vertex must name them", () => {
    expect(parseSettings(base).models).toBeUndefined();
    expect(
      parseSettings({ ...base, 'clauderun:model': 'claude-sonnet-4-5@20250929', 'clauderun:smallFastModel': 'claude-haiku-4-5@20251001' }).models,
    ).toEqual({
      model: 'claude-sonnet-4-5@20250929',
      smallFastModel: 'claude-haiku-4-5@20251001',
      allowed: ['claude-sonnet-4-5@20250929', 'claude-haiku-4-5@20251001'],
    });
    expect(
      parseSettings({
        ...base,
        'clauderun:model': 'claude-sonnet-4-5@20250929',
        'clauderun:smallFastModel': 'claude-haiku-4-5@20251001',
        'clauderun:models': 'claude-haiku-4-5@20251001, claude-sonnet-4-5@20250929,x',
      }).models?.allowed,
    ).toEqual(['claude-haiku-4-5@20251001', 'claude-sonnet-4-5@20250929', 'x']);
    expect(() => parseSettings({ ...base, 'clauderun:modelUpstream': 'vertex' })).toThrow(
      /clauderun:model and clauderun:smallFastModel are required with modelUpstream vertex/,
    );
    expect(() => parseSettings({ ...base, 'clauderun:model': 'm' })).toThrow(/set both or neither/);
    expect(() =>
      parseSettings({
        ...base,
        'clauderun:model': 'claude-sonnet-4-5@20250929',
        'clauderun:smallFastModel': 'claude-haiku-4-5@20251001',
        'clauderun:models': 'other',
      }),
    ).toThrow(
      /clauderun:models must include clauderun:model and clauderun:smallFastModel: claude-sonnet-4-5@20250929, claude-haiku-4-5@20251001 missing/,
    );
  });

  test('daily budgets take a number or none, as the service does', () => {
    expect(parseSettings({ ...base, 'clauderun:dailyTokenLimit': '2000000', 'clauderun:dailyCostLimitUsd': 'none' })).toMatchObject({
      dailyTokenLimit: 2_000_000,
      dailyCostLimitUsd: null,
    });
    expect(parseSettings({ ...base, 'clauderun:dailyCostLimitUsd': ' 2.5 ' })).toMatchObject({ dailyCostLimitUsd: 2.5 });
    expect(parseSettings({ ...base, 'clauderun:dailyEgressLimitBytes': 'none' })).toMatchObject({ dailyEgressLimitBytes: null });
    expect(() => parseSettings({ ...base, 'clauderun:dailyEgressLimitBytes': '1.5' })).toThrow(
      /dailyEgressLimitBytes must be a positive whole number or none/,
    );
  });

  test("egress takes the service's syntax, kept as written for the runner's environment", () => {
    expect(parseSettings({ ...base, 'clauderun:egressAllow': ' npm, *.example.com:8443 ' })).toMatchObject({
      egressAllow: 'npm, *.example.com:8443',
    });
  });

  test('blank values mean the default; numbers are read from text', () => {
    const s = parseSettings({ ...base, 'clauderun:turnTimeoutSeconds': ' ', 'clauderun:sandboxMemoryMb': '2048', 'clauderun:protect': 'false' });
    expect(s).toMatchObject({ turnTimeoutSeconds: 600, sandboxMemoryMb: 2048, protect: false });
  });

  test.each<[string, RawSettings, RegExp]>([
    ['header auth, which trusts X-User-Id', { 'clauderun:authMode': 'header' }, /authMode header .* local use only/],
    ['an unknown auth mode', { 'clauderun:authMode': 'none' }, /authMode must be one of: apikey, firebase/],
    ['a fractional CPU count', { 'clauderun:sandboxCpus': '0.5' }, /sandboxCpus must be one of: 1, 2, 4, 6, 8/],
    ['more memory than the CPUs allow', { 'clauderun:sandboxMemoryMb': '8192' }, /needs clauderun:sandboxCpus of at least 2/],
    [
      'less memory than Cloud Run gives 4 CPUs',
      { 'clauderun:sandboxCpus': '4', 'clauderun:sandboxMemoryMb': '1024' },
      /sandboxCpus 4 needs clauderun:sandboxMemoryMb of at least 2048/,
    ],
    ['less memory than Cloud Run gives 8 CPUs', { 'clauderun:sandboxCpus': '8', 'clauderun:sandboxMemoryMb': '2048' }, /at least 4096/],
    ['less memory than Cloud Run runs', { 'clauderun:sandboxMemoryMb': '256' }, /sandboxMemoryMb must be at least 512/],
    ['a turn the API cannot wait for', { 'clauderun:turnTimeoutSeconds': '3600' }, /turnTimeoutSeconds must be at most 3540/],
    ['a timeout that is not a number', { 'clauderun:turnTimeoutSeconds': 'ten' }, /turnTimeoutSeconds must be a number/],
    ['protect that is not a boolean', { 'clauderun:protect': 'yes' }, /protect must be true or false/],
    ['a region that is not one', { 'gcp:region': 'Europe' }, /gcp:region must be a region/],
    [
      'more running sandboxes than Cloud Run runs executions in a region',
      { 'clauderun:maxRunningSandboxes': '1001' },
      /maxRunningSandboxes must be at most 1000/,
    ],
    ['no runJob calls at all', { 'clauderun:runJobsPerMinute': '0' }, /runJobsPerMinute must be at least 1/],
    [
      'more warm sandboxes than may run',
      { 'clauderun:maxRunningSandboxes': '5', 'clauderun:warmSandboxes': '6' },
      /warmSandboxes 6 is more than clauderun:maxRunningSandboxes 5/,
    ],
    ['a warm sandbox that waits under a sweep', { 'clauderun:warmSandboxIdleSeconds': '30' }, /warmSandboxIdleSeconds must be at least 60/],
    ['no turns at all', { 'clauderun:maxTurnsPerMinute': '0' }, /maxTurnsPerMinute must be at least 1/],
    [
      'more running turns per user than Cloud Run runs',
      { 'clauderun:maxRunningTurnsPerUser': '1001' },
      /maxRunningTurnsPerUser must be at most 1000/,
    ],
    ['a fraction of an open request', { 'clauderun:maxOpenRequestsPerUser': '2.5' }, /maxOpenRequestsPerUser must be a whole number/],
    ['a fraction of a token', { 'clauderun:dailyTokenLimit': '1.5' }, /dailyTokenLimit must be a positive whole number or none/],
    ['a budget that is no number', { 'clauderun:dailyCostLimitUsd': 'lots' }, /dailyCostLimitUsd must be a positive number or none/],
    ['a budget of nothing', { 'clauderun:dailyCostLimitUsd': '0' }, /dailyCostLimitUsd must be a positive number or none/],
    [
      'an egress wildcard over a whole top-level domain',
      { 'clauderun:egressAllow': 'npm,*.com' },
      /clauderun:egressAllow: malformed pattern "\*\.com": a wildcard must leave at least two labels/,
    ],
    [
      'an egress pattern that is an address',
      { 'clauderun:egressAllow': '169.254.169.254:80' },
      /clauderun:egressAllow: malformed pattern .* IP address/,
    ],
  ])('refuses %s', (_, raw, message) => {
    expect(() => parseSettings({ ...base, ...raw })).toThrow(message);
  });

  test('project and region are required, and say how to set them', () => {
    expect(() => parseSettings({})).toThrow(/gcp:project is required \(pulumi config set gcp:project .*gcp:region is required/);
  });

  test("the API's URL is predicted from project, region and the function's fixed name", () => {
    const n = names(parseSettings(base));
    expect(n.apiUrl).toBe('https://europe-west1-my-project-1.cloudfunctions.net/clauderun-api');
    expect(n.apiHost).toBe(new URL(n.apiUrl).host);
  });

  test('Pulumi.example.yaml lists every key the program reads, and no other', () => {
    const example = readFileSync('infra/Pulumi.example.yaml', 'utf8');
    const keys = [...example.matchAll(/^ {2}([a-z]+:[A-Za-z]+):/gm)].map((m) => m[1]);
    expect(keys.sort()).toEqual([...CONFIG_KEYS].sort());
    expect(example).toMatch(/clauderun:anthropicApiKey:\n\s+secure: /);
  });

  test("Pulumi.yaml runs index.ts through tsx: the repository is an ES module, which Pulumi's ts-node cannot load", () => {
    const project = readFileSync('infra/Pulumi.yaml', 'utf8');
    expect(project).toMatch(/^name: clauderun$/m);
    expect(project).toMatch(/^main: index\.ts$/m);
    expect(project).toMatch(/^ {4}typescript: false$/m);
    expect(project).toMatch(/^ {4}nodeargs: --import=tsx$/m);
    const root = JSON.parse(readFileSync('package.json', 'utf8')) as { type: string; devDependencies: Record<string, string> };
    expect(root.type).toBe('module');
    expect(root.devDependencies).toHaveProperty('tsx');
  });
});
