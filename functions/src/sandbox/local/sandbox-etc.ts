import { existsSync, lstatSync, type Stats, readdirSync, readlinkSync } from 'node:fs';
import { AGENT_USER } from '../../contract/sandbox-layout.js';
import { SANDBOX_PATHS } from './sandbox-paths.js';
import type { SandboxIdentity } from './sandbox-uids.js';
import type { FdInputs } from './fd-inputs.js';

/**
 * The sandbox's /etc: a few generated files naming no host user, host or network, plus the
 * host parts programs need that say nothing about the host (certificates, the loader's cache,
 * Debian's alternatives, the time zone). Read-only once made.
 */

const generated = (agent: SandboxIdentity): Record<string, string> => ({
  passwd: [
    'root:x:0:0:root:/root:/usr/sbin/nologin',
    `${AGENT_USER.name}:x:${agent.uid}:${agent.gid}:${AGENT_USER.name}:${SANDBOX_PATHS.home}:/bin/bash`,
    'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin',
  ].join('\n'),
  group: ['root:x:0:', `${AGENT_USER.name}:x:${agent.gid}:`, 'nogroup:x:65534:'].join('\n'),
  hosts: ['127.0.0.1 localhost', '::1 localhost ip6-localhost ip6-loopback', '127.0.1.1 sandbox'].join('\n'),
  hostname: 'sandbox',
  // The sandbox has no network: there is no name server to name.
  'resolv.conf': '# no name server: the sandbox has no network',
  'nsswitch.conf': ['passwd: files', 'group: files', 'shadow: files', 'hosts: files', 'networks: files', 'protocols: files', 'services: files'].join(
    '\n',
  ),
});

/** Host entries of /etc shared read-only: they describe software, not the machine or its users. */
const SHARED = [
  'alternatives',
  'ca-certificates',
  'ssl',
  'ld.so.cache',
  'localtime',
  'protocols',
  'services',
  'mime.types',
  'perl',
  'bash.bashrc',
  'inputrc',
  'gitconfig',
  'os-release',
];
/** Debian's Python keeps its site configuration here (/etc/python3.11, ...). */
const SHARED_PREFIXES = ['python3'];

export function etcArgs(inputs: FdInputs, agent: SandboxIdentity, hostEtc = '/etc'): string[] {
  const args = ['--perms', '0755', '--tmpfs', '/etc'];
  for (const [name, content] of Object.entries(generated(agent)))
    args.push('--perms', '0644', '--file', String(inputs.add(`${content}\n`)), `/etc/${name}`);
  const prefixed = existsSync(hostEtc) ? readdirSync(hostEtc).filter((name) => SHARED_PREFIXES.some((prefix) => name.startsWith(prefix))) : [];
  for (const name of [...SHARED, ...prefixed]) {
    const host = `${hostEtc}/${name}`;
    let stat: Stats;
    try {
      stat = lstatSync(host);
    } catch {
      continue;
    }
    // A symlink stays one (Debian's localtime, os-release): its target is under /usr, already there.
    if (stat.isSymbolicLink()) args.push('--symlink', readlinkSync(host), `/etc/${name}`);
    else args.push('--ro-bind', host, `/etc/${name}`);
  }
  args.push('--remount-ro', '/etc');
  return args;
}
