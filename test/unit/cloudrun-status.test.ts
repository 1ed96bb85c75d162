import { describe, expect, it } from 'vitest';
import { CloudRunLauncher, endOf, type RunExecutions } from '../../functions/src/sandbox/cloudrun/cloudrun-launcher.js';

/** Executions as getExecution answers them: one fixed answer, or gRPC's NOT_FOUND (5). */
function launcherAnswering(answer: 'not found' | Record<string, unknown>): CloudRunLauncher {
  const executions = {
    getExecution: async () => {
      if (answer === 'not found') throw Object.assign(new Error('5 NOT_FOUND: execution not found'), { code: 5 });
      return [answer];
    },
    cancelExecution: async () => [{}],
  } as unknown as RunExecutions;
  return new CloudRunLauncher({
    jobs: { runJob: async () => [{}] } as never,
    executions,
    jobName: 'projects/p/locations/l/jobs/j',
    apiUrl: 'http://10.0.0.2',
    log: () => {},
  });
}

const EXECUTION = 'projects/p/locations/l/jobs/j/executions/j-abc';

describe('asking Cloud Run how an execution ended', () => {
  it('takes "not found" soon after the launch for an execution still on its way', async () => {
    expect(await launcherAnswering('not found').status(EXECUTION, Date.now() - 5_000)).toBeUndefined();
  });

  it('takes "not found" long after the launch for an execution deleted, which can report nothing', async () => {
    expect(await launcherAnswering('not found').status(EXECUTION, Date.now() - 10 * 60_000)).toMatchObject({
      kind: 'exited',
      detail: 'its execution no longer exists',
    });
  });

  it('reads the end and its time from a protobuf Timestamp, as the client library gives it', async () => {
    const seconds = Math.floor(Date.now() / 1000) - 40;
    const end = await launcherAnswering({
      completionTime: { seconds: String(seconds), nanos: 5e8 },
      failedCount: 1,
      conditions: [{ type: 'Completed', message: 'Task was killed' }],
    }).status(EXECUTION, Date.now() - 60_000);
    expect(end).toEqual({ kind: 'exited', exitCode: null, signal: null, outOfMemory: false, detail: 'Task was killed', at: seconds * 1000 + 500 });
  });

  it('says nothing of an execution still running, or still being reconciled', () => {
    expect(endOf({ completionTime: null, succeededCount: 0 })).toBeUndefined();
    expect(endOf({ completionTime: '2026-12-01T10:00:00Z', reconciling: true, failedCount: 0 })).toBeUndefined();
    expect(endOf({ completionTime: '2026-12-01T10:00:00Z', reconciling: false, succeededCount: 1 })).toMatchObject({ kind: 'exited', exitCode: 0 });
  });
});
