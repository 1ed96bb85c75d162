import { spawnSync } from 'node:child_process';
import { SandboxUnavailableError } from '../launcher.js';
import { SECCOMP_PYTHON } from './seccomp-filter.js';

/**
 * Refuses to start rather than run anything unisolated: names every missing piece at once.
 */
export function checkIsolationTools(runningAsRoot: boolean, searchPath: string): void {
  const env = { PATH: searchPath };
  const problems: string[] = [];
  if (process.platform !== 'linux') problems.push(`the local sandbox needs Linux (this is ${process.platform}); use Docker or the cloud`);
  // As root the service mounts each sandbox's tmpfs itself, in a mount namespace of its own.
  const need = ['bwrap', 'socat', ...(runningAsRoot ? ['setpriv', 'unshare', 'mount'] : [])];
  for (const tool of need) {
    if (spawnSync('/bin/sh', ['-c', `command -v ${tool}`], { stdio: 'ignore', env }).status !== 0) {
      problems.push(`${tool} is not installed (Debian/Ubuntu: apt-get install ${packageOf(tool)})`);
    }
  }
  // The seccomp filter is generated with libseccomp's Python bindings (seccomp-filter.ts).
  if (spawnSync(SECCOMP_PYTHON, ['-c', 'import seccomp'], { stdio: 'ignore', env }).status !== 0) {
    problems.push(`python3-seccomp is not installed for ${SECCOMP_PYTHON} (Debian/Ubuntu: apt-get install python3-seccomp)`);
  }
  if (problems.length === 0) {
    const trial = spawnSync(
      'bwrap',
      ['--ro-bind', '/', '/', '--unshare-net', '--unshare-pid', '--unshare-ipc', ...(runningAsRoot ? [] : ['--unshare-user']), 'true'],
      { encoding: 'utf8', env },
    );
    if (trial.status !== 0) {
      problems.push(
        `bubblewrap cannot create namespaces here: ${(trial.stderr || trial.error?.message || '').trim()} ` +
          '(unprivileged user namespaces may be disabled: sysctl kernel.unprivileged_userns_clone=1)',
      );
    }
  }
  if (problems.length > 0) throw new SandboxUnavailableError(`local sandbox unavailable: ${problems.join('; ')}`);
}

const packageOf = (tool: string): string =>
  ({ bwrap: 'bubblewrap', socat: 'socat', setpriv: 'util-linux', unshare: 'util-linux', mount: 'mount' })[tool] ?? tool;
