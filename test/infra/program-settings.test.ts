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
    'clauderun:runnerMaxInstances': '7',
    'clauderun:maxRunningSandboxes': '250',
    'clauderun:runJobsPerMinute': '20',
    'clauderun:maxRunningTurnsPerUser': '4',
    'clauderun:maxTurnsPerMinute': '30',
    'clauderun:maxOpenRequestsPerUser': '8',
    'clauderun:dailyTokenLimit': '5000000',
    'clauderun:dailyCostLimitUsd': 'none',
    'clauderun:firestoreLocation': 'nam5',
    'clauderun:deletedStateRetentionDays': '30',
    'clauderun:firestoreIndexesFile': writeTestIndexes(),
    'clauderun:protect': 'false',
  });
});

const job = () => run.named('sandbox-job').inputs;
const fnConfig = () => run.named('api-function').inputs.serviceConfig;
const runnerConfig = () => run.named('runner-function').inputs.serviceConfig;

describe('configured limits', () => {
  test('the job takes its CPU, memory and timeout from the configuration', () => {
    const t = job().template.template;
    expect(t.containers[0].resources.limits).toEqual({ cpu: '2', memory: '4096Mi' });
    expect(t.timeout).toBe('900s');
    expect(t.maxRetries).toBe(0);
  });

  test('both functions are told the same limits and hold requests longer than a turn', () => {
    for (const config of [fnConfig(), runnerConfig()]) {
      expect(config.environmentVariables).toMatchObject({
        CLAUDERUN_SANDBOX_CPUS: '2',
        CLAUDERUN_SANDBOX_MEMORY_MB: '4096',
        CLAUDERUN_TURN_TIMEOUT_SECONDS: '900',
        CLAUDERUN_AUTH: 'firebase',
        CLAUDERUN_MAX_RUNNING_SANDBOXES: '250',
        CLAUDERUN_RUNJOBS_PER_MINUTE: '20',
        CLAUDERUN_MAX_RUNNING_TURNS_PER_USER: '4',
        CLAUDERUN_MAX_TURNS_PER_MINUTE: '30',
        CLAUDERUN_DAILY_TOKEN_LIMIT: '5000000',
        CLAUDERUN_DAILY_COST_LIMIT_USD: 'none',
      });
      expect(config.timeoutSeconds).toBe(960);
    }
    expect(fnConfig().environmentVariables.CLAUDERUN_MAX_OPEN_REQUESTS_PER_USER).toBe('8');
    expect(fnConfig().maxInstanceCount).toBe(3);
    expect(runnerConfig().maxInstanceCount).toBe(7);
  });

  test('the sandbox subnet grows with the sandboxes the service may run: 250 need 1,000 addresses, a /22', () => {
    expect(run.named('sandbox-subnet').inputs.ipCidrRange).toBe('10.8.0.0/22');
  });

  test('Firestore location and the state retention follow the configuration', () => {
    expect(run.named('firestore').inputs.locationId).toBe('nam5');
    expect(run.named('state-bucket').inputs.lifecycleRules).toContainEqual({
      action: { type: 'Delete' },
      condition: { daysSinceNoncurrentTime: 30, withState: 'ARCHIVED' },
    });
  });

  test('the URLs, the endpoint and the schedule follow the project and region', () => {
    const apiUrl = 'https://us-central1-clauderun-other.cloudfunctions.net/clauderun-api';
    expect(run.outputs.apiUrl).toBe(apiUrl);
    expect(run.named('sweeper-schedule').inputs).toMatchObject({
      region: 'us-central1',
      httpTarget: { uri: `${apiUrl}/ops/sweep`, oidcToken: { audience: apiUrl } },
    });
    expect(fnConfig().environmentVariables.CLAUDERUN_SWEEPER_AUDIENCE).toBe(apiUrl);
    for (const name of ['runner-endpoint-address', 'runner-neg', 'runner-backend', 'runner-url-map', 'runner-http-proxy', 'runner-forwarding-rule']) {
      expect(run.named(name).inputs.region, name).toBe('us-central1');
    }
    expect(run.named('sandbox-egress-allow-runner').inputs.match.destIpRanges).toEqual([`${run.named('runner-endpoint-address').state.address}/32`]);
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
