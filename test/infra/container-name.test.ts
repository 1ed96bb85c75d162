import { expect, test } from 'vitest';
import * as contract from '../../functions/src/contract/runner.js';
import { SANDBOX_CONTAINER_NAME } from '../../infra/sandbox-job.js';

/**
 * The launcher names the job's container in every runJob's containerOverrides with the service's
 * SANDBOX_CONTAINER_NAME; the job (infra/sandbox-job.ts) must call its container the same. The
 * infra program does not import the service's code (Pulumi runs it apart from the build), so this
 * test holds the two together. Until the service declares its constant, there is nothing to
 * compare and the test is skipped.
 */
const serviceName = (contract as Record<string, unknown>)['SANDBOX_CONTAINER_NAME'];

test.skipIf(serviceName === undefined)('the job names its container as the launcher does in containerOverrides', () => {
  expect(serviceName).toBe(SANDBOX_CONTAINER_NAME);
});
