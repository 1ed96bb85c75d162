import { type Stats, lstatSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import type { FdInputs } from './fd-inputs.js';
import type { SandboxStorage } from './sandbox-disk.js';
import { etcArgs } from './sandbox-etc.js';
import { SANDBOX_API_PORT, SANDBOX_PATHS } from './sandbox-paths.js';
import type { SandboxIdentity } from './sandbox-uids.js';

/**
 * The bubblewrap command line for one sandbox: a new mount, pid, net, ipc and uts namespace;
 * system directories read-only, an /etc of its own; only the turn's home, workspace and /tmp
 * writable (tmpfs); a seccomp filter; the agent as a non-root uid; no environment but what is
 * passed in. Everything secret or host-specific goes through file descriptors (FdInputs), never
 * the command line.
 */

export interface HostPaths {
  /** The service's directory holding the bridge socket; the sandbox sees it read-only. */
  runDir: string;
  node: string;
  claude: string;
}

/** Small files copied into the sandbox rather than bind-mounted: a bind shows its host path in /proc/self/mountinfo. */
export interface StagedFiles {
  runner: Buffer;
  shellPrefix: Buffer;
}

export interface BwrapOptions {
  host: HostPaths;
  storage: SandboxStorage;
  env: Record<string, string>;
  /**
   * Root mounts as root and then drops to the sandbox uid with setpriv, so the agent is a real
   * unprivileged uid on the host; anyone else gets a user namespace mapping to the sandbox uid.
   */
  runningAsRoot: boolean;
  /** The agent's uid and gid in this sandbox (sandbox-uids.ts). */
  identity: SandboxIdentity;
  /** Where the arguments' data goes: the seccomp program, /etc's files, the staged files. */
  inputs: FdInputs;
  /** BPF for bwrap --seccomp (see seccomp-filter.ts). */
  seccomp: Buffer;
  staged: StagedFiles;
}

const SYSTEM_DIRS = ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32'];

/** On merged-/usr systems these are symlinks into /usr; elsewhere real directories. */
function systemDirArgs(): string[] {
  const args: string[] = [];
  for (const dir of SYSTEM_DIRS) {
    const hostPath = `/${dir}`;
    let stat: Stats;
    try {
      stat = lstatSync(hostPath);
    } catch {
      continue;
    }
    if (stat.isSymbolicLink()) args.push('--symlink', readlinkSync(hostPath), hostPath);
    else if (stat.isDirectory()) args.push('--ro-bind', hostPath, hostPath);
  }
  return args;
}

/** Made for the home to be mounted in: /home. */
const homeParent = path.posix.dirname(SANDBOX_PATHS.home);

function storageArgs(storage: SandboxStorage): string[] {
  const p = SANDBOX_PATHS;
  if (storage.kind === 'mounted') {
    return [
      '--bind',
      storage.tmp,
      p.tmp,
      '--perms',
      '0755',
      '--dir',
      homeParent,
      '--bind',
      storage.home,
      p.home,
      '--bind',
      storage.workspace,
      p.workspace,
    ];
  }
  return [
    '--perms',
    '1777',
    '--size',
    String(storage.tmpBytes),
    '--tmpfs',
    p.tmp,
    '--perms',
    '0755',
    '--dir',
    homeParent,
    '--perms',
    '0755',
    '--size',
    String(storage.homeBytes),
    '--tmpfs',
    p.home,
    '--perms',
    '0755',
    '--size',
    String(storage.workspaceBytes),
    '--tmpfs',
    p.workspace,
  ];
}

/**
 * The sandbox's first process. As root it drops to the agent's uid and runs itself again; then
 * it starts the bridge to the API and becomes the runner.
 */
function startScript(identity: SandboxIdentity): string {
  const p = SANDBOX_PATHS;
  return [
    '#!/bin/sh',
    `if [ "$(id -u)" = 0 ]; then exec setpriv --reuid=${identity.uid} --regid=${identity.gid} --clear-groups --inh-caps=-all --bounding-set=-all -- "$0"; fi`,
    `socat TCP-LISTEN:${SANDBOX_API_PORT},bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:${p.apiSocket} &`,
    `exec ${p.node} ${p.runner}`,
    '',
  ].join('\n');
}

export interface BwrapCommand {
  /** Everything but the command: handed over on a descriptor (`bwrap --args 3`). */
  options: string[];
  /**
   * bwrap (0.8) takes the command itself only from its real command line: a fixed path that
   * says nothing about the host or the turn.
   */
  command: string[];
}

export function bwrapArgs(options: BwrapOptions): BwrapCommand {
  const { host, env, inputs } = options;
  const p = SANDBOX_PATHS;
  const envArgs = Object.entries({
    HOME: p.home,
    PATH: `${p.binDir}:/usr/local/bin:/usr/bin:/bin`,
    LANG: 'C.UTF-8',
    ...env,
  }).flatMap(([k, v]) => ['--setenv', k, v]);
  const identity = options.runningAsRoot
    ? ['--cap-add', 'CAP_SETUID', '--cap-add', 'CAP_SETGID']
    : ['--unshare-user', '--uid', String(options.identity.uid), '--gid', String(options.identity.gid)];
  return {
    options: [
      '--die-with-parent',
      '--new-session',
      '--unshare-ipc',
      '--unshare-pid',
      '--unshare-net',
      '--unshare-uts',
      '--unshare-cgroup-try',
      '--hostname',
      'sandbox',
      '--ro-bind',
      '/usr',
      '/usr',
      ...systemDirArgs(),
      ...etcArgs(inputs, options.identity),
      '--proc',
      '/proc',
      '--dev',
      '/dev',
      ...storageArgs(options.storage),
      '--perms',
      '0755',
      '--dir',
      '/run',
      '--ro-bind',
      host.runDir,
      p.runDir,
      '--perms',
      '0755',
      '--tmpfs',
      p.toolsDir,
      '--perms',
      '0755',
      '--dir',
      p.binDir,
      '--ro-bind',
      host.node,
      p.node,
      '--ro-bind',
      host.claude,
      p.claude,
      '--perms',
      '0644',
      '--file',
      String(inputs.add(options.staged.runner)),
      p.runner,
      '--perms',
      '0755',
      '--file',
      String(inputs.add(options.staged.shellPrefix)),
      p.shellPrefix,
      '--perms',
      '0755',
      '--file',
      String(inputs.add(startScript(options.identity))),
      p.start,
      '--remount-ro',
      p.toolsDir,
      '--seccomp',
      String(inputs.add(options.seccomp)),
      '--chdir',
      p.workspace,
      '--clearenv',
      ...envArgs,
      ...identity,
    ],
    command: [p.start],
  };
}
