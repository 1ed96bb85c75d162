/** Who and where things are inside every local sandbox. */

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
  /** What bwrap runs: the only command line the sandbox (and ps on the host) can see. */
  start: '/opt/clauderun/start',
} as const;
