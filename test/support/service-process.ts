import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { projectRoot } from '../../functions/src/project-root.js';
import { freePort, TEST_QUOTA_ENV } from './service.js';

/**
 * The service as `npm start` (or `npm run sim`) runs it, in a process of its own: it can be killed
 * for real, stopped with a signal, and its memory read from /proc without the caller's heap and
 * sockets in it.
 */

export interface ServiceProcess {
  pid: number;
  url: string;
  /** Everything it wrote to stdout and stderr so far, for error messages. */
  output(): string;
  /** Its resident set size in bytes now; throws, with its output, if it is no longer running. */
  rss(): Promise<number>;
  /** SIGTERM and wait for the exit (SIGKILL if it does not go within `graceMs`); its exit code. */
  stop(graceMs?: number): Promise<number | null>;
  /** SIGKILL, as a crash would, and wait for the exit. */
  kill(): Promise<void>;
}

/**
 * The compiled entry points a test or the bench can run: `function` is the HTTP function as Cloud
 * Functions runs it, on the Functions Framework's own server and command line.
 */
export const ENTRY_POINTS = {
  start: ['dist/functions/src/main.js'],
  sim: ['dist/test/sim/index.js'],
  function: ['node_modules/@google-cloud/functions-framework/build/src/main.js', '--target=clauderun', '--source=.'],
} as const;

/** Where each serves the API on its port: the sim as a cloudfunctions.net URL does, under the function's name. */
const BASE_PATHS: Record<keyof typeof ENTRY_POINTS, string> = { start: '', sim: '/clauderun-api', function: '' };

/** The sim starts the Firestore emulator, then its first request cold-starts an instance. */
const START_TIMEOUT_MS = 60_000;

export async function startServiceProcess(env: Record<string, string>, entry: keyof typeof ENTRY_POINTS = 'start'): Promise<ServiceProcess> {
  const port = await freePort();
  let output = '';
  const [script, ...args] = ENTRY_POINTS[entry];
  const child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', path.join(projectRoot(), script), ...args], {
    cwd: projectRoot(),
    // Only what the service needs: the caller's own environment may carry settings (a real
    // ANTHROPIC_API_KEY, CLAUDERUN_* overrides) that would change what is tested or measured.
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...TEST_QUOTA_ENV, ...env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => resolve(code));
    // A process that could not be spawned never exits: count that as its end.
    child.once('error', (error) => {
      output += `\n${error.message}`;
      resolve(null);
    });
  });
  const gone = () => child.exitCode !== null || child.signalCode !== null;
  const stop = async (graceMs = 15_000): Promise<number | null> => {
    if (gone() || child.pid === undefined) return child.exitCode;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    const code = await exited;
    clearTimeout(timer);
    return code;
  };
  const kill = async (): Promise<void> => {
    child.kill('SIGKILL');
    await exited;
  };
  const url = `http://127.0.0.1:${port}${BASE_PATHS[entry]}`;
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (gone() || child.pid === undefined) throw new Error(`the service exited at start: ${output.trim()}`);
    if (
      await fetch(`${url}/healthz`).then(
        (r) => r.ok,
        () => false,
      )
    ) {
      const pid = child.pid;
      const rss = async () => {
        if (gone()) {
          throw new Error(`the service exited (${child.exitCode ?? child.signalCode}): ${output.trim().slice(-2000)}`);
        }
        return residentBytes(pid);
      };
      return { pid, url, output: () => output, rss, stop, kill };
    }
    await sleep(100);
  }
  await stop();
  throw new Error(`the service did not answer /healthz within ${START_TIMEOUT_MS / 1000} s: ${output.trim()}`);
}

/** A process's resident set size in bytes (VmRSS of /proc/<pid>/status, which is in KiB). */
async function residentBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
  if (kib === undefined) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(kib) * 1024;
}

/** The soft open-file limit of a process (the "Max open files" row of /proc/<pid>/limits). */
export async function openFileLimit(pid: number | 'self'): Promise<number> {
  const limits = await readFile(`/proc/${pid}/limits`, 'utf8');
  const soft = /^Max open files\s+(\S+)/m.exec(limits)?.[1];
  if (soft === undefined) throw new Error(`no "Max open files" in /proc/${pid}/limits`);
  return soft === 'unlimited' ? Number.POSITIVE_INFINITY : Number(soft);
}
