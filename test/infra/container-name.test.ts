import { expect, test } from 'vitest';
import { SANDBOX_CONTAINER_NAME as LAUNCHERS } from '../../functions/src/contract/runner.js';
import { SANDBOX_CONTAINER_NAME as JOBS } from '../../infra/sandbox-job.js';

/**
 * The launcher names the job's container in every runJob's containerOverrides; the job
 * (infra/sandbox-job.ts) must call its container the same. The infra program does not import the
 * service's code (Pulumi runs it apart from the build), so this test holds the two together.
 */
test('the job names its container as the launcher does in containerOverrides', () => {
  expect(LAUNCHERS).toBe(JOBS);
});
