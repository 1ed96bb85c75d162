import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SandboxSpec } from '../../functions/src/sandbox/launcher.js';
import { openLauncher, type LauncherRecipe } from './sandbox-launchers.js';

/**
 * A process of its own that opens a launcher from a recipe, launches one sandbox and then only
 * lives on, until it is killed: what a service instance that crashes under a running turn is.
 */
export interface LauncherProcess {
  /** The launched sandbox's ref, as the process's handle names it. */
  ref: string;
  /** SIGKILL, and its exit waited for. */
  kill(): Promise<void>;
}

const HERE = fileURLToPath(import.meta.url);
const START_TIMEOUT_MS = 30_000;
const running = new Set<ChildProcess>();

/** Kills every launcher process still running (a test that failed before it killed its own). */
export async function killLauncherProcesses(): Promise<void> {
  await Promise.all(
    [...running].map((child) => {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGKILL');
      return exited;
    }),
  );
}

export async function launchInProcess(recipe: LauncherRecipe, spec: SandboxSpec): Promise<LauncherProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', HERE, JSON.stringify(recipe), JSON.stringify(spec)], {
    cwd: path.resolve(path.dirname(HERE), '..', '..'),
    // Its stdin ends with this process: a launcher process left by a failed test goes with it.
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  running.add(child);
  void exited.then(() => running.delete(child));
  const ref = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no sandbox launched within ${START_TIMEOUT_MS} ms: ${output}`)), START_TIMEOUT_MS);
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      output += chunk;
      const line = /^launched (.+)$/m.exec(output);
      if (line?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(line[1]);
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`the launcher process exited: ${output}`));
    });
  });
  return {
    ref,
    kill: async () => {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

if (process.argv[1] === HERE) {
  const [recipe, spec] = process.argv.slice(2);
  const launcher = await openLauncher(JSON.parse(recipe ?? '') as LauncherRecipe, (line) => process.stderr.write(`${line}\n`));
  const handle = await launcher.launch(JSON.parse(spec ?? '') as SandboxSpec);
  process.stdout.write(`launched ${handle.ref}\n`);
  process.stdin.on('end', () => process.exit(1)).resume();
}
