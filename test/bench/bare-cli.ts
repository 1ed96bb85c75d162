import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { loadConfig } from '../../functions/src/config.js';
import { commandInCgroup, type SandboxCgroup } from '../../functions/src/sandbox/local/cgroups.js';
import { agentArguments } from '../../sandbox-image/runner/agent.js';
import type { FakeAnthropic } from '../fixtures/fake-anthropic.js';

/**
 * The baseline: the same pinned Claude Code CLI the sandbox runs, started directly with no
 * sandbox and no service in between, so the difference is what clauderun itself costs.
 */

export const CLAUDE_BIN = path.resolve('node_modules/@anthropic-ai/claude-code/bin/claude.exe');

/** The runner's own arguments for a first turn with no options, so that both runs do the same work. */
const ARGS = agentArguments({ resumeSessionId: null, model: loadConfig({}).agent.model, options: {} });

export async function cliVersion(): Promise<string> {
  const { stdout } = await promisify(execFile)(CLAUDE_BIN, ['--version']);
  return stdout.trim();
}

/** True when stream-json output holds a successful final result line. */
function succeeded(stdout: string): boolean {
  return stdout.split('\n').some((line) => {
    if (!line.includes('"type":"result"')) return false;
    try {
      const event = JSON.parse(line) as { type?: unknown; is_error?: unknown };
      return event.type === 'result' && event.is_error === false;
    } catch {
      return false;
    }
  });
}

/** Runs one bare prompt, in `cgroup` when given, and returns its wall time in ms; throws if the CLI did not succeed. */
export async function bareRun(fake: Pick<FakeAnthropic, 'url' | 'apiKey'>, prompt: string, cgroup?: SandboxCgroup): Promise<number> {
  // A fresh HOME and cwd each run, as a sandbox gets: no config or session left over to speed it up.
  const dir = await mkdtemp(path.join(tmpdir(), 'clauderun-bench-bare-'));
  try {
    const env = {
      PATH: process.env.PATH ?? '',
      HOME: dir,
      ANTHROPIC_BASE_URL: fake.url,
      ANTHROPIC_API_KEY: fake.apiKey,
      DISABLE_TELEMETRY: '1',
      DISABLE_ERROR_REPORTING: '1',
      DISABLE_AUTOUPDATER: '1',
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
      // We run as root, where the CLI refuses --dangerously-skip-permissions unless told it is sandboxed.
      IS_SANDBOX: '1',
    };
    const started = performance.now();
    const command = cgroup ? commandInCgroup(cgroup, [CLAUDE_BIN, ...ARGS], env.PATH) : { file: CLAUDE_BIN, args: ARGS, env: {} };
    const child = spawn(command.file, command.args, { cwd: dir, env: { ...env, ...command.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.stdin.end(prompt);
    const code = await new Promise<number | null>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', resolve);
    });
    const elapsed = performance.now() - started;
    if (code !== 0 || !succeeded(stdout)) {
      throw new Error(`bare CLI run failed (exit ${code}): ${(stderr || stdout).trim().slice(-500)}`);
    }
    return elapsed;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
