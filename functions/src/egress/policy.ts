import { lookup } from 'node:dns/promises';
import { classifyAddress } from './address-class.js';
import { allows, type EgressAllowlist, hostNameProblem, normalizeHostName } from './allowlist.js';
import type { EgressDecision, EgressPolicy, EgressTarget } from './egress-policy.js';
import type { TestResolve } from './test-resolve.js';

/** The egress settings (config.egress): what is allowed, and what a turn may use of it. */
export interface EgressSettings {
  allow: EgressAllowlist;
  /** Tests only: allowed names served by local servers instead (CLAUDERUN_EGRESS_TEST_RESOLVE). */
  testResolve: TestResolve;
  /** Enforced by the tunnel: connections one turn may open, and bytes it may move both ways. */
  maxConnectionsPerTurn: number;
  maxBytesPerTurn: number;
}

/** A host's addresses, in the resolver's order; it may throw or reject. */
export type EgressResolver = (host: string) => Promise<readonly string[]>;

/** The system's resolver, as a tool in the sandbox would have it: every address, IPv4 and IPv6 in its order. */
export const systemResolver: EgressResolver = async (host) => (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);

const refused = (reason: string): EgressDecision => ({ allowed: false, reason });

/**
 * The host as a reason may quote it: the sandbox chose it, and the reason may end up in a status
 * line, a header or a log, so control and non-ASCII characters are escaped and length is bounded.
 */
const quoted = (host: string): string => {
  const escaped = host.replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return escaped.length > 260 ? `${escaped.slice(0, 256)}...` : escaped;
};

/**
 * How long a lookup may take before the connection is refused: a tool waits on the answer, and
 * getaddrinfo holds one of libuv's few threads meanwhile.
 */
export const LOOKUP_TIMEOUT_MS = 10_000;

class LookupTimeout extends Error {
  readonly code = `no answer in ${LOOKUP_TIMEOUT_MS / 1000} s`;
}

async function withTimeout<T>(work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new LookupTimeout()), LOOKUP_TIMEOUT_MS);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export function createEgressPolicy(settings: Pick<EgressSettings, 'allow' | 'testResolve'>, resolver: EgressResolver = systemResolver): EgressPolicy {
  return {
    async decide({ host: rawHost, port }: EgressTarget): Promise<EgressDecision> {
      const target = `${quoted(rawHost)}:${port}`;
      const notAllowed = `this deployment does not allow ${target}`;
      if (!Number.isInteger(port) || port < 1 || port > 65535) return refused(`${notAllowed}: the port must be from 1 to 65535`);
      const host = normalizeHostName(rawHost);
      const problem = hostNameProblem(host);
      if (problem !== undefined)
        return refused(`${notAllowed}: ${rawHost === '' ? 'no host given' : problem.replace(/^its /, "the host's ").replace(/^it /, 'the host ')}`);
      if (settings.allow.length === 0) return refused(`${notAllowed}: it allows no connections out (CLAUDERUN_EGRESS_ALLOW is empty)`);
      if (!allows(settings.allow, host, port)) return refused(`${notAllowed}: ${host} on port ${port} is not in CLAUDERUN_EGRESS_ALLOW`);

      const mapped = settings.testResolve.get(host);
      if (mapped !== undefined) return { allowed: true, addresses: [mapped.address], port: mapped.port };

      let resolved: readonly string[];
      try {
        resolved = await withTimeout(resolver(host));
      } catch (error) {
        const code = error instanceof Error && 'code' in error && typeof error.code === 'string' ? error.code : String(error);
        return refused(`${notAllowed}: ${host} could not be resolved (${code})`);
      }
      if (resolved.length === 0) return refused(`${notAllowed}: ${host} resolves to no address`);
      const addresses: string[] = [];
      for (const address of resolved) {
        const verdict = classifyAddress(address);
        // One bad address refuses them all: a tool's retry, or a second lookup, could land on it.
        if (!verdict.public) return refused(`${notAllowed}: ${host} resolves to ${verdict.what} (${address})`);
        if (!addresses.includes(verdict.address)) addresses.push(verdict.address);
      }
      return { allowed: true, addresses };
    },
  };
}
