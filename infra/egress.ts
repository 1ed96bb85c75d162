import * as gcp from '@pulumi/gcp';
import * as pulumi from '@pulumi/pulumi';
import type { Names, Settings } from './config.js';
import type { SandboxNetwork } from './network.js';
import { RUNNER_ENDPOINT_PORT } from './runner-endpoint.js';

/**
 * What a sandbox may send: TCP to the runner endpoint's address and port, and nothing else. A
 * global network firewall policy attached to the sandbox network, with one allow rule naming that
 * one address (a /32) ahead of deny-all rules for every IPv4 and IPv6 destination
 * (cloud.google.com/firewall/docs/network-firewall-policies).
 *
 * No FQDN rule: an FQDN object matches the addresses a name resolves to
 * (cloud.google.com/firewall/docs/fqdn-objects-overview), and a function's public name resolves
 * to Google front-end addresses that serve every other run.app and cloudfunctions.net service as
 * well; a sandbox that sent another host name to an allowed address would reach those. The
 * endpoint's address belongs to this deployment alone.
 *
 * The metadata server stays reachable (no firewall rule applies to it), which is why the sandbox's
 * service account has no roles at all.
 */

/** Lower numbers win: the allow rule is evaluated before the deny-all rules. */
export const ALLOW_RUNNER_PRIORITY = 1000;
export const DENY_ALL_PRIORITY = 65000;

export interface EgressPolicy {
  policy: gcp.compute.NetworkFirewallPolicy;
  /** The job must wait for this: before it, the network has no egress policy at all. */
  association: gcp.compute.NetworkFirewallPolicyAssociation;
}

export function egressPolicy(
  s: Settings,
  n: Names,
  deps: { network: SandboxNetwork; runnerAddress: gcp.compute.Address; apis: pulumi.Resource[] },
): EgressPolicy {
  const opts: pulumi.CustomResourceOptions = { dependsOn: deps.apis };
  const policy = new gcp.compute.NetworkFirewallPolicy(
    'sandbox-egress',
    { project: s.project, name: `${n.network}-egress`, description: 'clauderun sandboxes: deny all egress but the runner endpoint' },
    opts,
  );
  const rule = (
    logical: string,
    args: Omit<gcp.compute.NetworkFirewallPolicyRuleArgs, 'project' | 'firewallPolicy' | 'direction' | 'enableLogging'>,
  ) =>
    new gcp.compute.NetworkFirewallPolicyRule(
      logical,
      { ...args, project: s.project, firewallPolicy: policy.name, direction: 'EGRESS', enableLogging: false },
      opts,
    );

  const allowRunner = rule('sandbox-egress-allow-runner', {
    ruleName: 'allow-runner-endpoint',
    description: 'the runner endpoint (internal load balancer in front of the runner function) only',
    priority: ALLOW_RUNNER_PRIORITY,
    action: 'allow',
    match: {
      destIpRanges: [pulumi.interpolate`${deps.runnerAddress.address}/32`],
      layer4Configs: [{ ipProtocol: 'tcp', ports: [String(RUNNER_ENDPOINT_PORT)] }],
    },
  });

  const denyAll = (['ipv4', 'ipv6'] as const).map((family, i) =>
    rule(`sandbox-egress-deny-all-${family}`, {
      ruleName: `deny-all-${family}`,
      description: 'everything else a sandbox sends is dropped',
      priority: DENY_ALL_PRIORITY + i,
      action: 'deny',
      match: { destIpRanges: [family === 'ipv4' ? '0.0.0.0/0' : '::/0'], layer4Configs: [{ ipProtocol: 'all' }] },
    }),
  );

  const association = new gcp.compute.NetworkFirewallPolicyAssociation(
    'sandbox-egress-association',
    { project: s.project, name: `${n.network}-egress`, firewallPolicy: policy.id, attachmentTarget: deps.network.network.id },
    // Attach the policy only once its rules exist, so it never applies half-written.
    { dependsOn: [...deps.apis, allowRunner, ...denyAll] },
  );

  return { policy, association };
}
