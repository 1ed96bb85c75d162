import * as gcp from '@pulumi/gcp';
import type * as pulumi from '@pulumi/pulumi';
import { FRONTEND_SUBNET_RANGE, PROXY_ONLY_SUBNET_RANGE, sandboxSubnetRange } from './address-plan.js';
import type { Names, Settings } from './config.js';

/**
 * Where sandboxes live on the network: a VPC of their own that the job joins with Direct VPC
 * egress for ALL traffic. It has no route out of Google's network (no Cloud NAT, no external
 * address, Private Google Access off), so a packet can only go to an address inside it; the
 * egress policy (egress.ts) then lets through only the runner endpoint's address.
 *
 * Three subnets (address-plan.ts): the sandboxes', sized for the configured number of running
 * sandboxes; the runner endpoint's frontend address; and the proxy-only subnet that the regional
 * internal Application Load Balancer's Envoy proxies need
 * (cloud.google.com/load-balancing/docs/l7-internal/setting-up-l7-internal-serverless,
 * "Configure the network and subnets").
 */

export interface SandboxNetwork {
  network: gcp.compute.Network;
  /** The sandboxes' addresses (Direct VPC egress). */
  subnet: gcp.compute.Subnetwork;
  /** Holds only the runner endpoint's reserved internal address. */
  frontendSubnet: gcp.compute.Subnetwork;
  /** Reserved for the load balancer's managed proxies; nothing else can take addresses from it. */
  proxySubnet: gcp.compute.Subnetwork;
}

export function sandboxNetwork(s: Settings, n: Names, apis: pulumi.Resource[]): SandboxNetwork {
  const opts: pulumi.CustomResourceOptions = { dependsOn: apis };
  const network = new gcp.compute.Network(
    'sandbox-network',
    {
      project: s.project,
      name: n.network,
      description: 'clauderun sandboxes: egress only to the runner endpoint',
      autoCreateSubnetworks: false,
      routingMode: 'REGIONAL',
      // The policy's rules decide before any classic VPC firewall rule someone might add later.
      networkFirewallPolicyEnforcementOrder: 'BEFORE_CLASSIC_FIREWALL',
    },
    opts,
  );

  type SubnetSpec = Omit<gcp.compute.SubnetworkArgs, 'project' | 'region' | 'name' | 'network'>;
  const subnet = (logical: string, name: string, spec: SubnetSpec) =>
    new gcp.compute.Subnetwork(logical, { ...spec, project: s.project, region: s.region, name, network: network.id }, opts);
  // Private Google Access stays off: with it on, every Google API would be routable from a sandbox.
  const privateOnly = { stackType: 'IPV4_ONLY', privateIpGoogleAccess: false } as const;

  return {
    network,
    subnet: subnet('sandbox-subnet', n.network, { ...privateOnly, ipCidrRange: sandboxSubnetRange(s.maxRunningSandboxes) }),
    frontendSubnet: subnet('runner-frontend-subnet', `${n.runnerEndpoint}-frontend`, { ...privateOnly, ipCidrRange: FRONTEND_SUBNET_RANGE }),
    // A proxy-only subnet has no stack type or Private Google Access of its own; purpose and role
    // are what make it one (cloud.google.com/load-balancing/docs/proxy-only-subnets).
    proxySubnet: subnet('runner-proxy-subnet', `${n.runnerEndpoint}-proxies`, {
      ipCidrRange: PROXY_ONLY_SUBNET_RANGE,
      purpose: 'REGIONAL_MANAGED_PROXY',
      role: 'ACTIVE',
    }),
  };
}
