import * as gcp from '@pulumi/gcp';
import type * as pulumi from '@pulumi/pulumi';
import { SANDBOX_CONTAINER_NAME } from '../functions/src/contract/runner-env.js';
import type { Names, Settings } from './config.js';
import type { EgressPolicy } from './egress.js';
import type { SandboxNetwork } from './network.js';

/**
 * The Cloud Run job whose executions are the sandboxes: one task per turn, running the sandbox
 * image (by digest) as the role-less sandbox account, with the configured CPU, memory and turn
 * timeout, never retried (a retry would run the agent twice), and every packet through the sandbox
 * network. The API starts it with per-turn overrides (the runner's variables, RUNNER_ENV in
 * functions/src/contract/runner-env.ts, and the timeout), which cannot change the image, the
 * limits, the account or the network. The job sets none of those variables itself.
 */

/**
 * The job's one container, named as the launcher names it in every runJob's containerOverrides
 * (ContainerOverride.name, "the name of the container specified as a DNS_LABEL":
 * cloud.google.com/run/docs/reference/rest/v2/Overrides), so that the turn's env lands on this
 * container by name rather than by position. Both take the name from the contract.
 */
export { SANDBOX_CONTAINER_NAME };

export function sandboxJob(
  s: Settings,
  n: Names,
  deps: {
    imageRef: pulumi.Input<string>;
    account: gcp.serviceaccount.Account;
    network: SandboxNetwork;
    egress: EgressPolicy;
    apis: pulumi.Resource[];
  },
): gcp.cloudrunv2.Job {
  return new gcp.cloudrunv2.Job(
    'sandbox-job',
    {
      project: s.project,
      location: s.region,
      name: n.sandboxJob,
      deletionProtection: s.protect,
      template: {
        taskCount: 1,
        parallelism: 1,
        template: {
          containers: [
            {
              name: SANDBOX_CONTAINER_NAME,
              image: deps.imageRef,
              resources: { limits: { cpu: String(s.sandboxCpus), memory: `${s.sandboxMemoryMb}Mi` } },
            },
          ],
          maxRetries: 0,
          timeout: `${s.turnTimeoutSeconds}s`,
          serviceAccount: deps.account.email,
          executionEnvironment: 'EXECUTION_ENVIRONMENT_GEN2',
          vpcAccess: {
            networkInterfaces: [{ network: deps.network.network.id, subnetwork: deps.network.subnet.id }],
            egress: 'ALL_TRAFFIC',
          },
        },
      },
    },
    // No sandbox may start on a network without its egress policy.
    { dependsOn: [...deps.apis, deps.egress.association] },
  );
}
