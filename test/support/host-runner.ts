import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runnerEnv } from '../../functions/src/contract/runner-env.js';

export interface RunnerExit {
  code: number | null;
  stderr: string;
}

/**
 * The real runner (the bundle a sandbox gets, dist/runner/runner.mjs) and the real CLI, run as a
 * plain process with the variables a sandbox is given (RUNNER_ENV): for tests of what lies between the
 * runner and the API (URLs, a front end, a failing network) rather than of the sandbox.
 * `place` holds the sandbox's home and workspace, kept for the next turn of the conversation (a
 * state restores to the paths it was saved from); by default a new directory, removed after.
 */
export async function runRunnerOnHost(
  env: {
    apiUrl: string;
    turnId: string;
    token: string;
    timeoutMs?: number /** Searched before the project's own commands: a stand-in `claude`, say. */;
    binDir?: string;
  },
  place?: string,
): Promise<RunnerExit> {
  const dir = place ?? (await mkdtemp(path.join(tmpdir(), 'clauderun-host-runner-')));
  const home = path.join(dir, 'home');
  const workspace = path.join(dir, 'workspace');
  await Promise.all([home, workspace].map((d) => mkdir(d, { recursive: true })));
  try {
    const child = spawn(process.execPath, [path.resolve('dist/runner/runner.mjs')], {
      cwd: workspace,
      env: {
        PATH: [env.binDir, path.resolve('node_modules/.bin'), process.env.PATH ?? ''].filter((p) => p !== undefined).join(':'),
        HOME: home,
        ...runnerEnv({ turnId: env.turnId, turnToken: env.token }, env.apiUrl),
        // Outside a sandbox, as root, the CLI skips permissions only when told it is in one.
        IS_SANDBOX: '1',
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    // A runner that never ends fails its test with what it said, not with a test timeout.
    const timer = setTimeout(() => child.kill('SIGKILL'), env.timeoutMs ?? 60_000);
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (exitCode) => resolve(exitCode));
    }).finally(() => clearTimeout(timer));
    return { code, stderr };
  } finally {
    if (place === undefined) await rm(dir, { recursive: true, force: true });
  }
}
