import * as gcp from '@pulumi/gcp';
import * as pulumi from '@pulumi/pulumi';
import { RUNNER_ENDPOINT_ADDRESS } from './address-plan.js';
import type { Names, Settings } from './config.js';
import type { SandboxNetwork } from './network.js';

/**
 * The one address a sandbox may send to: a regional internal Application Load Balancer whose
 * only backend is a serverless NEG in front of the runner function. A function's own URLs sit on
 * Google front-end addresses shared with every other run.app and cloudfunctions.net service; a
 * load balancer with a serverless NEG gives it "a dedicated IPv4 address that is not shared with
 * other services" (cloud.google.com/load-balancing/docs/negs/serverless-neg-concepts). Set up as
 * cloud.google.com/load-balancing/docs/l7-internal/setting-up-l7-internal-serverless describes:
 * reserved internal address -> forwarding rule -> target HTTP proxy -> URL map -> backend service
 * -> serverless NEG -> the runner function (a 2nd gen function is a Cloud Run service, which is
 * what a regional internal load balancer's serverless NEG points at).
 *
 * HTTP, not HTTPS, on this address. HTTPS would need a certificate for a private address: a
 * self-managed one (a key to keep, rotate and expire) or Certificate Manager with a private CA
 * and a DNS name the sandboxes would then have to resolve, and a CA bundle in every sandbox to
 * trust it. What it would protect is the hop from a sandbox to the proxy, which never leaves
 * this VPC: the VPC holds only sandboxes, a sandbox cannot send to another sandbox (egress.ts
 * allows this address and nothing else), and Google encrypts traffic between its machines
 * itself (cloud.google.com/docs/security/encryption-in-transit). From the proxy to the function
 * the request travels inside Google's network to the serverless backend. The turn token on the
 * wire is bound to one turn and expires with it.
 */

/** Plain HTTP on the internal address (see above). */
export const RUNNER_ENDPOINT_PORT = 80;

/** Reserved first: the functions' environment and the egress policy both need it. */
export function runnerEndpointAddress(s: Settings, n: Names, network: SandboxNetwork): gcp.compute.Address {
  return new gcp.compute.Address('runner-endpoint-address', {
    project: s.project,
    region: s.region,
    name: n.runnerEndpoint,
    description: 'clauderun: the runner endpoint, the only address sandboxes may reach',
    addressType: 'INTERNAL',
    subnetwork: network.frontendSubnet.id,
    address: RUNNER_ENDPOINT_ADDRESS,
  });
}

/** The base URL sandboxes call (the launcher hands it to each execution as API_URL). */
export const runnerEndpointUrl = (address: gcp.compute.Address) => pulumi.interpolate`http://${address.address}`;

export interface RunnerEndpoint {
  neg: gcp.compute.RegionNetworkEndpointGroup;
  backend: gcp.compute.RegionBackendService;
  urlMap: gcp.compute.RegionUrlMap;
  proxy: gcp.compute.RegionTargetHttpProxy;
  forwardingRule: gcp.compute.ForwardingRule;
}

export function runnerEndpoint(
  s: Settings,
  n: Names,
  deps: { network: SandboxNetwork; address: gcp.compute.Address; runnerFunction: gcp.cloudfunctionsv2.Function },
): RunnerEndpoint {
  const common = { project: s.project, region: s.region };
  const neg = new gcp.compute.RegionNetworkEndpointGroup('runner-neg', {
    ...common,
    name: n.runnerEndpoint,
    networkEndpointType: 'SERVERLESS',
    // The function's Cloud Run service bears the function's name.
    cloudRun: { service: deps.runnerFunction.name },
  });
  const backend = new gcp.compute.RegionBackendService('runner-backend', {
    ...common,
    name: n.runnerEndpoint,
    loadBalancingScheme: 'INTERNAL_MANAGED',
    protocol: 'HTTP',
    backends: [{ group: neg.id, balancingMode: 'UTILIZATION', capacityScaler: 1 }],
    // No timeoutSec and no health check: Google refuses both on a backend service with a
    // serverless NEG ("Timeout sec is not supported for a backend service with Serverless network
    // endpoint groups"); a request lasts as long as the function's own timeout allows
    // (serverless-neg-concepts, "Backend service limitations"). The runner's model streams rely on it.
  });
  const urlMap = new gcp.compute.RegionUrlMap('runner-url-map', { ...common, name: n.runnerEndpoint, defaultService: backend.id });
  const proxy = new gcp.compute.RegionTargetHttpProxy('runner-http-proxy', { ...common, name: n.runnerEndpoint, urlMap: urlMap.id });
  const forwardingRule = new gcp.compute.ForwardingRule(
    'runner-forwarding-rule',
    {
      ...common,
      name: n.runnerEndpoint,
      loadBalancingScheme: 'INTERNAL_MANAGED',
      ipProtocol: 'TCP',
      portRange: String(RUNNER_ENDPOINT_PORT),
      ipAddress: deps.address.id,
      network: deps.network.network.id,
      subnetwork: deps.network.frontendSubnet.id,
      networkTier: 'PREMIUM',
      // Clients in this region only: the sandboxes run here.
      allowGlobalAccess: false,
      target: proxy.id,
    },
    // The proxies must have their subnet before the load balancer can be created.
    { dependsOn: [deps.network.proxySubnet] },
  );
  return { neg, backend, urlMap, proxy, forwardingRule };
}
