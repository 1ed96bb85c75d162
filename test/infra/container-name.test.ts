import { expect, test } from 'vitest';
import { SANDBOX_CONTAINER_NAME as CONTRACTS } from '../../functions/src/contract/runner-env.js';
import { SANDBOX_CONTAINER_NAME as JOBS } from '../../infra/sandbox-job.js';

/**
 * The launcher names the job's container in every runJob's containerOverrides; the job
 * (infra/sandbox-job.ts) must call its container the same. Both take the name from the contract,
 * and it is a DNS label, as Cloud Run requires of a container's name.
 */
test('the job names its container as the launcher does in containerOverrides', () => {
  expect(JOBS).toBe(CONTRACTS);
  expect(CONTRACTS).toMatch(/^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/);
});
