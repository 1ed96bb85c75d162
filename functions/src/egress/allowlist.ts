import ipaddr from 'ipaddr.js';
import { settingSchema } from './setting-schema.js';

/*
 * Which hosts a deployment lets sandboxes reach (CLAUDERUN_EGRESS_ALLOW): host patterns with an
 * optional port, and named presets. The allowlist is by name only: an address is never a pattern,
 * and a host given as an address never matches one.
 */

/** Ports a pattern without one allows: HTTPS, and plain HTTP (redirects, some mirrors). */
export const DEFAULT_PORTS: readonly number[] = Object.freeze([443, 80]);

/** One allowed host pattern: an exact name, or `*.` and the name whose subdomains it allows. */
export interface EgressRule {
  /** Lower case, no trailing dot; for a wildcard, the suffix after `*.`. */
  name: string;
  wildcard: boolean;
  ports: readonly number[];
}

export type EgressAllowlist = readonly EgressRule[];

/**
 * What `npm install`, `pip install` and `git clone https://github.com/...` reach by default, and
 * nothing more; all HTTPS.
 * - npm: the registry serves both the metadata and the tarballs (the `registry` setting's default,
 *   https://docs.npmjs.com/cli/using-npm/config#registry; tarball URLs are
 *   registry.npmjs.org/<name>/-/<name>-<version>.tgz).
 * - pypi: pip's index is https://pypi.org/simple/ (https://pip.pypa.io/en/stable/cli/pip_install/,
 *   --index-url), whose links point at the distributions on files.pythonhosted.org
 *   (https://docs.pypi.org/api/).
 * - github: git's smart HTTP protocol talks to the clone URL's host alone
 *   (https://docs.github.com/en/get-started/git-basics/about-remote-repositories).
 */
export const EGRESS_PRESETS = {
  npm: ['registry.npmjs.org:443'],
  pypi: ['pypi.org:443', 'files.pythonhosted.org:443'],
  github: ['github.com:443'],
} as const satisfies Record<string, readonly string[]>;

export type EgressPreset = keyof typeof EGRESS_PRESETS;

const isPreset = (word: string): word is EgressPreset => Object.hasOwn(EGRESS_PRESETS, word);

/**
 * A name as DNS compares it: ASCII case folded, the root's trailing dot dropped. Only ASCII is
 * folded: toLowerCase() would turn the Kelvin sign into a `k` and let a non-ASCII name through.
 */
export const normalizeHostName = (host: string): string => host.replace(/[A-Z]/g, (c) => c.toLowerCase()).replace(/\.$/, '');

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
/** What inet_aton takes as one part of an address: `127`, `0177`, `0x7f`. */
const NUMERIC_LABEL = /^(?:0x[0-9a-f]*|[0-9]+)$/;

/**
 * Why `name` (already normalized) is not a host name this policy judges, or undefined when it is
 * one. An address in any of the forms resolvers accept (`2130706433`, `0177.0.0.1`, `[::1]`) is not
 * a name: a last label that is a number makes one of those, and no top-level domain is all digits.
 */
export function hostNameProblem(name: string): string | undefined {
  if (name === '') return 'it is empty';
  if (/[^\x21-\x7e]/.test(name)) return 'it is not ASCII (write an internationalized name in its xn-- form)';
  if (name.startsWith('[') || ipaddr.isValid(name)) return 'it is an IP address (the allowlist is by name)';
  if (name.length > 253) return 'it is longer than 253 characters';
  const labels = name.split('.');
  if (labels.some((label) => label === '')) return 'it has an empty label';
  const bad = labels.find((label) => !LABEL.test(label));
  if (bad !== undefined) return `its label "${bad}" is not letters, digits and inner hyphens`;
  if (NUMERIC_LABEL.test(labels.at(-1) ?? '')) return 'it ends in a number, as an IP address does (the allowlist is by name)';
  return undefined;
}

export class EgressPatternError extends Error {
  override name = 'EgressPatternError';
}

function parsePort(text: string, pattern: string): number {
  const port = /^[0-9]{1,5}$/.test(text) ? Number(text) : Number.NaN;
  if (!(port >= 1 && port <= 65535)) throw new EgressPatternError(`"${pattern}": the port must be a number from 1 to 65535`);
  return port;
}

/** One pattern (not a preset): `host`, `host:port`, `*.suffix` or `*.suffix:port`. */
export function parseEgressPattern(pattern: string): EgressRule {
  const colon = pattern.lastIndexOf(':');
  const hostPart = colon === -1 ? pattern : pattern.slice(0, colon);
  const ports = colon === -1 ? DEFAULT_PORTS : [parsePort(pattern.slice(colon + 1), pattern)];
  if (hostPart.includes(':') || hostPart.startsWith('[')) {
    throw new EgressPatternError(`"${pattern}": it is an IP address (the allowlist is by name)`);
  }
  const normalized = normalizeHostName(hostPart);
  const wildcard = normalized.startsWith('*.');
  const name = wildcard ? normalized.slice(2) : normalized;
  if (name.includes('*')) throw new EgressPatternError(`"${pattern}": a * may only stand alone as the first label (*.example.com)`);
  const problem = hostNameProblem(name);
  if (problem !== undefined) throw new EgressPatternError(`"${pattern}": ${problem}`);
  // A single label resolves through the search domains (metadata, localhost), and `*.com` or
  // `*.co.uk`-less `*.uk` would allow a whole top-level domain.
  if (name.split('.').length < 2) {
    throw new EgressPatternError(
      wildcard
        ? `"${pattern}": a wildcard must leave at least two labels (*.example.com, not *.com)`
        : `"${pattern}": a name needs at least two labels (a single one resolves through the search domains)`,
    );
  }
  return { name, wildcard, ports };
}

/**
 * CLAUDERUN_EGRESS_ALLOW's text: comma-separated patterns and preset names. Blank: nothing allowed.
 * Throws EgressPatternError naming the first malformed pattern.
 */
export function parseEgressAllow(text: string): EgressAllowlist {
  const words = text
    .split(',')
    .map((word) => word.trim())
    .filter((word) => word !== '');
  return Object.freeze(words.flatMap((word) => (isPreset(word) ? EGRESS_PRESETS[word].map(parseEgressPattern) : [parseEgressPattern(word)])));
}

/**
 * The setting as a zod schema, for the service's configuration and the stack's alike: the same
 * syntax is refused in both places, with `name` (the variable or the stack key) in the message.
 */
export const egressAllowSchema = (name: string) => settingSchema(name, parseEgressAllow, EgressPatternError, 'malformed pattern ');

/** Whether `host` (normalized) on `port` is allowed: exact names alone, wildcards subdomains alone. */
export function allows(allow: EgressAllowlist, host: string, port: number): boolean {
  return allow.some((rule) => rule.ports.includes(port) && (rule.wildcard ? host.endsWith(`.${rule.name}`) : host === rule.name));
}

/** Whether any rule allows `host` (normalized), on whatever port. */
export const allowsName = (allow: EgressAllowlist, host: string): boolean => allow.some((rule) => allows([{ ...rule, ports: [0] }], host, 0));
