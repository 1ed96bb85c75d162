import { beforeAll, describe, expect, test } from 'vitest';
import { loadConfig } from '../../functions/src/config.js';
import { REQUIRED_APIS } from '../../infra/apis.js';
import { MODEL_CALLER_PERMISSIONS } from '../../infra/identity.js';
import { isIamGrant, MODEL_KEY, principalsOf, runProgram, writeTestIndexes, type ProgramRun, type Recorded } from './pulumi-mocks.js';

/**
 * A stack with `modelUpstream: vertex`: Claude on Vertex AI in the stack's own project, called
 * by the runner function with its service account's tokens. No model key is asked for or kept.
 */

const PROJECT = 'clauderun-test';
const REGION = 'europe-west1';

let run: ProgramRun;

beforeAll(async () => {
  run = await runProgram(
    {
      'gcp:project': PROJECT,
      'gcp:region': REGION,
      'clauderun:modelUpstream': 'vertex',
      'clauderun:model': 'claude-sonnet-4-5@20250929',
      'clauderun:smallFastModel': 'claude-haiku-4-5@20251001',
      'clauderun:models': 'claude-sonnet-4-5@20250929,claude-haiku-4-5@20251001,claude-opus-4-1@20250805',
      'clauderun:firestoreIndexesFile': writeTestIndexes(),
    },
    { modelKey: false },
  );
});

const email = (name: string) => run.named(name).state.email as string;
const fn = (name: string) => run.named(name);
const envOf = (f: Recorded) => f.inputs.serviceConfig.environmentVariables as Record<string, string>;
const secretEnvOf = (f: Recorded) => (f.inputs.serviceConfig.secretEnvironmentVariables as { key: string }[]).map((s) => s.key);

describe('a stack calling Claude on Vertex AI', () => {
  test('enables the Vertex AI API besides the others', () => {
    const services = run.ofType('gcp:projects/service:Service').map((s) => s.inputs.service as string);
    expect(services.sort()).toEqual([...REQUIRED_APIS, 'aiplatform.googleapis.com'].sort());
  });

  test('keeps no model key: one secret, the token-signing key, and nobody reads another', () => {
    expect(run.ofType('gcp:secretmanager/secret:Secret').map((s) => s.inputs.secretId)).toEqual(['clauderun-token-secret']);
    expect(run.ofType('gcp:secretmanager/secretVersion:SecretVersion')).toHaveLength(1);
    for (const resource of run.resources) expect(JSON.stringify(resource.inputs)).not.toContain(MODEL_KEY);
    for (const name of ['api-function', 'runner-function']) expect(secretEnvOf(fn(name))).toEqual(['CLAUDERUN_TOKEN_SECRET']);
  });

  test("grants the runner's account, the one that calls the model, a role that only calls models, and no one else", () => {
    const role = run.named('model-caller-role');
    expect(role.inputs.permissions).toEqual(['aiplatform.endpoints.predict']);
    expect([...MODEL_CALLER_PERMISSIONS]).toEqual(['aiplatform.endpoints.predict']);
    expect(run.resources.filter(isIamGrant).some((g) => String(g.inputs.role).startsWith('roles/aiplatform'))).toBe(false);
    const vertexGrants = run.resources.filter(isIamGrant).filter((g) => g.inputs.role === role.state.name);
    expect(vertexGrants).toHaveLength(1);
    expect(vertexGrants[0]!.type).toBe('gcp:projects/iAMMember:IAMMember');
    expect(vertexGrants[0]!.inputs.project).toBe(PROJECT);
    expect(principalsOf(vertexGrants[0]!)).toEqual([`serviceAccount:${email('runner-account')}`]);
  });

  test("gives the runner the Vertex settings (the stack's project, the global location), which the service loads as Vertex AI", () => {
    expect(envOf(fn('runner-function'))).toMatchObject({
      CLAUDERUN_MODEL_UPSTREAM: 'vertex',
      CLAUDERUN_VERTEX_PROJECT: PROJECT,
      CLAUDERUN_VERTEX_REGION: 'global',
    });
    expect(Object.keys(envOf(fn('api-function'))).filter((name) => name.includes('VERTEX') || name === 'CLAUDERUN_MODEL_UPSTREAM')).toEqual([]);
    const runner = loadConfig({ ...envOf(fn('runner-function')), CLAUDERUN_TOKEN_SECRET: 'x'.repeat(48), K_SERVICE: 'clauderun-runner' });
    expect(runner.model).toEqual({ upstream: 'vertex', project: PROJECT, region: 'global', endpoint: 'https://aiplatform.googleapis.com' });
  });

  test("gives both functions the stack's models, so that a conversation's choice is judged by the list the proxy enforces", () => {
    for (const name of ['api-function', 'runner-function']) {
      const config = loadConfig({ ...envOf(fn(name)), CLAUDERUN_TOKEN_SECRET: 'x'.repeat(48), K_SERVICE: 'clauderun' });
      expect(config.agent).toMatchObject({
        model: 'claude-sonnet-4-5@20250929',
        smallFastModel: 'claude-haiku-4-5@20251001',
        models: ['claude-sonnet-4-5@20250929', 'claude-haiku-4-5@20251001', 'claude-opus-4-1@20250805'],
      });
    }
  });
});
