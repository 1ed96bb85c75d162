import { lstatSync, readlinkSync } from 'node:fs';
import type { SandboxStorage } from './sandbox-disk.js';

/**
 * The bubblewrap command line for one sandbox: a new mount, pid, net, ipc and uts namespace;
 * system directories read-only; only the turn's home, workspace and /tmp writable (tmpfs);
 * the agent as a non-root uid; no environment but what is passed in.
 */

export const SANDBOX_UID = 1000;
export const SANDBOX_GID = 1000;
/** Inside the sandbox, a loopback port forwards to the API through the bridge socket. */
export const SANDBOX_API_PORT = 8080;

export const SANDBOX_PATHS = {
  home: '/home/agent',
  workspace: '/workspace',
  runDir: '/run/clauderun',
  apiSocket: '/run/clauderun/api.sock',
  toolsDir: '/opt/clauderun',
  node: '/opt/clauderun/bin/node',
  claude: '/opt/clauderun/bin/claude',
  runner: '/opt/clauderun/runner.mjs',
  shellPrefix: '/opt/clauderun/oom-first.sh',
} as const;

export interface HostPaths {
  /** The service's directory holding the bridge socket; the sandbox sees it read-only. */
  runDir: string;
  node: string;
  claude: string;
  runner: string;
  shellPrefix: string;
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
}

const SYSTEM_DIRS = ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32'];

/** On merged-/usr systems these are symlinks into /usr; elsewhere real directories. */
function systemDirArgs(): string[] {
  const args: string[] = [];
  for (const dir of SYSTEM_DIRS) {
    const hostPath = `/${dir}`;
    let stat;
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

function storageArgs(storage: SandboxStorage): string[] {
  const p = SANDBOX_PATHS;
  if (storage.kind === 'mounted') {
    return ['--bind', storage.tmp, '/tmp', '--perms', '0755', '--dir', '/home', '--bind', storage.home, p.home, '--bind', storage.workspace, p.workspace];
  }
  return [
    '--perms', '1777', '--size', String(storage.tmpBytes), '--tmpfs', '/tmp',
    '--perms', '0755', '--dir', '/home',
    '--perms', '0755', '--size', String(storage.homeBytes), '--tmpfs', p.home,
    '--perms', '0755', '--size', String(storage.workspaceBytes), '--tmpfs', p.workspace,
  ];
}

export function bwrapArgs(options: BwrapOptions): string[] {
  const { host, env } = options;
  const p = SANDBOX_PATHS;
  const inner = [
    `socat TCP-LISTEN:${SANDBOX_API_PORT},bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:${p.apiSocket} &`,
    `exec ${p.node} ${p.runner}`,
  ].join('\n');
  const envArgs = Object.entries({
    HOME: p.home,
    PATH: `${p.toolsDir}/bin:/usr/local/bin:/usr/bin:/bin`,
    LANG: 'C.UTF-8',
    ...env,
  }).flatMap(([k, v]) => ['--setenv', k, v]);
  const identity = options.runningAsRoot
    ? ['--cap-add', 'CAP_SETUID', '--cap-add', 'CAP_SETGID', '--', 'setpriv', `--reuid=${SANDBOX_UID}`, `--regid=${SANDBOX_GID}`,
        '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--']
    : ['--unshare-user', '--uid', String(SANDBOX_UID), '--gid', String(SANDBOX_GID), '--'];
  return [
    '--die-with-parent',
    '--new-session',
    '--unshare-ipc',
    '--unshare-pid',
    '--unshare-net',
    '--unshare-uts',
    '--unshare-cgroup-try',
    '--hostname', 'sandbox',
    '--ro-bind', '/usr', '/usr',
    ...systemDirArgs(),
    '--ro-bind', '/etc', '/etc',
    '--proc', '/proc',
    '--dev', '/dev',
    ...storageArgs(options.storage),
    '--perms', '0755', '--dir', '/run',
    '--ro-bind', host.runDir, p.runDir,
    '--perms', '0755', '--dir', p.toolsDir,
    '--perms', '0755', '--dir', `${p.toolsDir}/bin`,
    '--ro-bind', host.node, p.node,
    '--ro-bind', host.claude, p.claude,
    '--ro-bind', host.runner, p.runner,
    '--ro-bind', host.shellPrefix, p.shellPrefix,
    '--chdir', p.workspace,
    '--clearenv',
    ...envArgs,
    ...identity,
    '/bin/sh', '-c', inner,
  ];
}
