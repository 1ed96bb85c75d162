import { beforeAll, describe, expect, test } from 'vitest';
import { runProgram, writeTestIndexes, type ProgramRun } from './pulumi-mocks.js';

/**
 * The same program with every setting changed: what the stack says is what Google is asked for.
 * (A file of its own: the program registers its resources once per module registry.)
 */

let run: ProgramRun;

beforeAll(async () => {
  run = await runProgram({
    'gcp:project': 'clauderun-other',
    'gcp:region': 'us-central1',
    'clauderun:authMode': 'firebase',
    'clauderun:turnTimeoutSeconds': '900',
    'clauderun:sandboxMemoryMb': '4096',
    'clauderun:sandboxCpus': '2',
    'clauderun:apiMaxInstances': '3',
    'clauderun:firestoreLocation': 'nam5',
    'clauderun:deletedStateRetentionDays': '30',
    'clauderun:firestoreIndexesFile': writeTestIndexes(),
    'clauderun:protect': 'false',
  });
});

const job = () => run.named('sandbox-job').inputs;
const fnConfig = () => run.named('api-function').inputs.serviceConfig;

describe('configured limits', () => {
  test('the job takes its CPU, memory and timeout from the configuration', () => {
    const t = job().template.template;
    expect(t.containers[0].resources.limits).toEqual({ cpu: '2', memory: '4096Mi' });
    expect(t.timeout).toBe('900s');
    expect(t.maxRetries).toBe(0);
  });

  test('the API is told the same limits and holds requests longer than a turn', () => {
    expect(fnConfig().environmentVariables).toMatchObject({
      CLAUDERUN_SANDBOX_CPUS: '2',
      CLAUDERUN_SANDBOX_MEMORY_MB: '4096',
      CLAUDERUN_TURN_TIMEOUT_SECONDS: '900',
      CLAUDERUN_AUTH: 'firebase',
    });
    expect(fnConfig().timeoutSeconds).toBe(960);
    expect(fnConfig().maxInstanceCount).toBe(3);
  });

  test('Firestore location and the state retention follow the configuration', () => {
    expect(run.named('firestore').inputs.locationId).toBe('nam5');
    expect(run.named('state-bucket').inputs.lifecycleRules).toContainEqual({
      action: { type: 'Delete' },
      condition: { daysSinceNoncurrentTime: 30, withState: 'ARCHIVED' },
    });
  });

  test('the URL and the firewall follow the project and region', () => {
    expect(run.outputs.apiUrl).toBe('https://us-central1-clauderun-other.cloudfunctions.net/clauderun-api');
    expect(run.named('sandbox-egress-allow-api').inputs.match.destFqdns).toEqual(['us-central1-clauderun-other.cloudfunctions.net']);
  });
});

describe('protect: false', () => {
  test('turns deletion protection explicitly off, so that `pulumi destroy` can remove everything', () => {
    expect(job().deletionProtection).toBe(false);
    expect(run.named('firestore').inputs).toMatchObject({ deleteProtectionState: 'DELETE_PROTECTION_DISABLED', deletionPolicy: 'DELETE' });
    expect(run.named('state-bucket').inputs).toMatchObject({ forceDestroy: true, deletionPolicy: 'DELETE' });
    for (const name of ['model-key', 'token-secret']) {
      expect(run.named(name).inputs).toMatchObject({ deletionProtection: false, deletionPolicy: 'DELETE' });
    }
  });
});
