import * as gcp from '@pulumi/gcp';
import * as pulumi from '@pulumi/pulumi';
import type { Names, Settings } from './config.js';

/**
 * Where sandboxes live on the network: a VPC of their own that the job joins with Direct VPC
 * egress for ALL traffic, under a firewall policy that denies every egress except HTTPS to the
 * API's host. A sandbox cannot reach the internet, other Google APIs, or anything in the project;
 * the metadata server stays reachable (it is outside any firewall), which is why the sandbox's
 * service account has no roles at all.
 *
 * Private Google Access is off, so Google APIs are not reachable through the subnet either; the
 * API's public host is reached through Cloud NAT, and the firewall lets only that host through.
 */

/** Lower numbers win: the allow rule is evaluated before the deny-all rules. */
export const ALLOW_API_PRIORITY = 1000;
export const DENY_ALL_PRIORITY = 65000;
/** Direct VPC egress takes its addresses from this subnet: a /24 holds ~100 concurrent sandboxes. */
export const SANDBOX_SUBNET_RANGE = '10.8.0.0/24';

export interface SandboxNetwork {
  network: gcp.compute.Network;
  subnet: gcp.compute.Subnetwork;
  policy: gcp.compute.NetworkFirewallPolicy;
  /** The job must wait for this: before it, the network has no egress policy at all. */
  association: gcp.compute.NetworkFirewallPolicyAssociation;
  nat: gcp.compute.RouterNat;
}

export function sandboxNetwork(s: Settings, n: Names, apis: pulumi.Resource[]): SandboxNetwork {
  const opts: pulumi.CustomResourceOptions = { dependsOn: apis };
  const network = new gcp.compute.Network(
    'sandbox-network',
    {
      project: s.project,
      name: n.network,
      description: 'clauderun sandboxes: egress only to the API',
      autoCreateSubnetworks: false,
      routingMode: 'REGIONAL',
      // The policy's rules decide before any classic VPC firewall rule someone might add later.
      networkFirewallPolicyEnforcementOrder: 'BEFORE_CLASSIC_FIREWALL',
    },
    opts,
  );

  const subnet = new gcp.compute.Subnetwork(
    'sandbox-subnet',
    {
      project: s.project,
      region: s.region,
      name: n.network,
      network: network.id,
      ipCidrRange: SANDBOX_SUBNET_RANGE,
      stackType: 'IPV4_ONLY',
      // Off: with it on, every Google API would be routable from a sandbox.
      privateIpGoogleAccess: false,
    },
    opts,
  );

  const policy = new gcp.compute.NetworkFirewallPolicy(
    'sandbox-egress',
    { project: s.project, name: `${n.network}-egress`, description: 'clauderun sandboxes: deny all egress but HTTPS to the API' },
    opts,
  );

  const allowApi = new gcp.compute.NetworkFirewallPolicyRule(
    'sandbox-egress-allow-api',
    {
      project: s.project,
      firewallPolicy: policy.name,
      ruleName: 'allow-api',
      description: `HTTPS to the clauderun API (${n.apiHost}) only`,
      priority: ALLOW_API_PRIORITY,
      direction: 'EGRESS',
      action: 'allow',
      match: { destFqdns: [n.apiHost], layer4Configs: [{ ipProtocol: 'tcp', ports: ['443'] }] },
      enableLogging: false,
    },
    opts,
  );

  const denyAll = (['0.0.0.0/0', '::/0'] as const).map(
    (range) =>
      new gcp.compute.NetworkFirewallPolicyRule(
        `sandbox-egress-deny-all-${range.includes(':') ? 'ipv6' : 'ipv4'}`,
        {
          project: s.project,
          firewallPolicy: policy.name,
          ruleName: `deny-all-${range.includes(':') ? 'ipv6' : 'ipv4'}`,
          description: 'everything else a sandbox sends is dropped',
          priority: DENY_ALL_PRIORITY + (range.includes(':') ? 1 : 0),
          direction: 'EGRESS',
          action: 'deny',
          match: { destIpRanges: [range], layer4Configs: [{ ipProtocol: 'all' }] },
          enableLogging: false,
        },
        opts,
      ),
  );

  const association = new gcp.compute.NetworkFirewallPolicyAssociation(
    'sandbox-egress-association',
    { project: s.project, name: `${n.network}-egress`, firewallPolicy: policy.id, attachmentTarget: network.id },
    // Attach the policy only once its rules exist, so it never applies half-written.
    { dependsOn: [...apis, allowApi, ...denyAll] },
  );

  const router = new gcp.compute.Router(
    'sandbox-router',
    { project: s.project, region: s.region, name: n.network, network: network.id, description: 'NAT for clauderun sandboxes' },
    opts,
  );
  const nat = new gcp.compute.RouterNat(
    'sandbox-nat',
    {
      project: s.project,
      region: s.region,
      router: router.name,
      name: n.network,
      natIpAllocateOption: 'AUTO_ONLY',
      sourceSubnetworkIpRangesToNat: 'LIST_OF_SUBNETWORKS',
      subnetworks: [{ name: subnet.id, sourceIpRangesToNats: ['ALL_IP_RANGES'] }],
    },
    opts,
  );

  return { network, subnet, policy, association, nat };
}
