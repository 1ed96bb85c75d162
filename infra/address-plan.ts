/**
 * The sandbox network's address plan, in one place: three subnets of one VPC and the one address
 * a sandbox may send to. Pure (no resources), so the tests check the arithmetic directly.
 *
 * - sandboxes: Direct VPC egress takes each running sandbox's addresses from here, so its size
 *   follows the configured number of sandboxes running at once (`sandboxSubnetPrefix`).
 * - frontend: holds nothing but the runner endpoint's reserved internal address.
 * - proxy-only: the Envoy proxies of the regional internal Application Load Balancer. Nothing
 *   else can use it, and packets never come from it to a sandbox unasked.
 *
 * The ranges sit far apart so that growing the sandbox subnet (up to a /20) never meets the others.
 */

/** The sandbox subnet always starts here; its prefix length depends on the configuration. */
export const SANDBOX_SUBNET_BASE = '10.8.0.0';
/** A /28: the smallest a subnet may be is /29; this one needs a single address. */
export const FRONTEND_SUBNET_RANGE = '10.9.0.0/28';
/**
 * The runner endpoint's address. Google keeps the first two and the last two addresses of every
 * subnet for itself (cloud.google.com/vpc/docs/subnets#unusable-ip-addresses-in-every-subnet):
 * .2 is the first one a resource may have.
 */
export const RUNNER_ENDPOINT_ADDRESS = '10.9.0.2';
/**
 * Google asks for at least a /26 (64 addresses) and recommends a /23 for the proxy-only subnet,
 * which every Envoy-based load balancer of the network and region shares
 * (cloud.google.com/load-balancing/docs/proxy-only-subnets, "Plan the size of your proxy-only subnet").
 */
export const PROXY_ONLY_SUBNET_RANGE = '10.10.0.0/23';

/**
 * "About 2-4 addresses per instance": Cloud Run estimates the addresses in use as twice the
 * instances (cloud.google.com/run/docs/configuring/networking-best-practices, "IP address
 * exhaustion") and has asked for four times as many free addresses as instances, which old
 * instances hold while new ones start (cloud.google.com/run/docs/configuring/vpc-direct-vpc,
 * "IP address allocation"). The upper figure is planned for.
 */
export const ADDRESSES_PER_SANDBOX = 4;
/** Cloud Run reserves subnet addresses in blocks of 16 (a /28) at a time (same page). */
export const ADDRESS_BLOCK = 16;
/** The four addresses of each subnet that no resource gets (see RUNNER_ENDPOINT_ADDRESS). */
export const RESERVED_PER_SUBNET = 4;
/** Direct VPC egress wants a /26 or larger subnet (vpc-direct-vpc, "IP address allocation"). */
export const LARGEST_SANDBOX_PREFIX = 26;
/** Up to a /20 (4,092 usable): room for the 1,000 running executions a region allows. */
export const SMALLEST_SANDBOX_PREFIX = 20;

/** Addresses the sandbox subnet must offer for `maxRunningSandboxes` at once. */
export function sandboxAddressesNeeded(maxRunningSandboxes: number): number {
  return Math.ceil((maxRunningSandboxes * ADDRESSES_PER_SANDBOX) / ADDRESS_BLOCK) * ADDRESS_BLOCK;
}

/** The longest prefix (the smallest subnet) that still holds every address the sandboxes need. */
export function sandboxSubnetPrefix(maxRunningSandboxes: number): number {
  const needed = sandboxAddressesNeeded(maxRunningSandboxes);
  for (let prefix = LARGEST_SANDBOX_PREFIX; prefix >= SMALLEST_SANDBOX_PREFIX; prefix--) {
    if (usableAddresses(prefix) >= needed) return prefix;
  }
  throw new Error(`${maxRunningSandboxes} sandboxes need ${needed} addresses, more than a /${SMALLEST_SANDBOX_PREFIX} holds`);
}

export function sandboxSubnetRange(maxRunningSandboxes: number): string {
  return `${SANDBOX_SUBNET_BASE}/${sandboxSubnetPrefix(maxRunningSandboxes)}`;
}

/** Addresses of a subnet with this prefix length that resources may have. */
export function usableAddresses(prefix: number): number {
  return 2 ** (32 - prefix) - RESERVED_PER_SUBNET;
}
