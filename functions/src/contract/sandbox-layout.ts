/**
 * Where things are inside every sandbox, the image's (sandbox-image/Dockerfile, which
 * test/infra/dockerfile.test.ts holds to this) and a local one's (sandbox/local) alike, and who
 * the agent is there. Imports nothing: the runner reads it without zod.
 */
export const SANDBOX_LAYOUT = {
  /** The agent's home: its Claude Code session files live under it. */
  home: '/home/agent',
  /** The agent's working directory: what a conversation's state keeps besides the session. */
  workspace: '/workspace',
  tmp: '/tmp',
  /** Ours, read-only: the runner and its helpers. */
  toolsDir: '/opt/clauderun',
  runner: '/opt/clauderun/runner.mjs',
  /** Runs each of the agent's shell commands so that the OOM killer takes it first (oom-first.sh). */
  shellPrefix: '/opt/clauderun/oom-first.sh',
} as const;

/** The agent's account: never root, the same numbers in the image and in a user namespace. */
export const AGENT_USER = { name: 'agent', uid: 1000, gid: 1000 } as const;

/** Where Claude Code keeps its sessions under the home, relative to it: what the next turn resumes. */
export const AGENT_SESSIONS_DIR = '.claude/projects';
