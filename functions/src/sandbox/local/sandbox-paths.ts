import { createHash } from 'node:crypto';
import path from 'node:path';

/** Where things are inside every local sandbox, and what names one service's sandboxes on the host. */

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
  /** What bwrap runs: the only command line the sandbox (and ps on the host) can see. */
  start: '/opt/clauderun/start',
} as const;

/**
 * What tells one service's sandboxes from another's on the host (their cgroups, socket
 * directory, uid range): a hash of its sandboxes directory.
 */
export function dataDirTag(sandboxesDir: string): string {
  return createHash('sha256').update(path.resolve(sandboxesDir)).digest('hex').slice(0, 12);
}
