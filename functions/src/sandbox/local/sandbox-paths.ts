import { createHash } from 'node:crypto';
import path from 'node:path';
import { SANDBOX_LAYOUT } from '../../contract/sandbox-layout.js';

/**
 * Where things are inside every local sandbox (what every sandbox has, SANDBOX_LAYOUT, and what
 * only a local one does), and what names one service's sandboxes on the host.
 */

/** Inside the sandbox, a loopback port forwards to the API through the bridge socket. */
export const SANDBOX_API_PORT = 8080;

const RUN_DIR = '/run/clauderun';

export const SANDBOX_PATHS = {
  ...SANDBOX_LAYOUT,
  runDir: RUN_DIR,
  apiSocket: `${RUN_DIR}/api.sock`,
  /** Node and the CLI, on the sandbox's PATH (the image has them in /usr/local/bin). */
  binDir: `${SANDBOX_LAYOUT.toolsDir}/bin`,
  node: `${SANDBOX_LAYOUT.toolsDir}/bin/node`,
  claude: `${SANDBOX_LAYOUT.toolsDir}/bin/claude`,
  /** What bwrap runs: the only command line the sandbox (and ps on the host) can see. */
  start: `${SANDBOX_LAYOUT.toolsDir}/start`,
} as const;

/**
 * What tells one service's sandboxes from another's on the host (their cgroups, socket
 * directory, uid range): a hash of its sandboxes directory.
 */
export function dataDirTag(sandboxesDir: string): string {
  return createHash('sha256').update(path.resolve(sandboxesDir)).digest('hex').slice(0, 12);
}
