import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ExecutionsClient, JobsClient } from '@google-cloud/run';
import { PassThroughClient } from 'google-auth-library';
import { CloudRunLauncher } from '../../functions/src/sandbox/cloudrun/cloudrun-launcher.js';
import type { SandboxLauncher } from '../../functions/src/sandbox/launcher.js';
import { forwardToPort } from '../../functions/src/sandbox/local/api-bridge.js';
import { openCgroups } from '../../functions/src/sandbox/local/cgroups.js';
import { LocalSandboxLauncher } from '../../functions/src/sandbox/local/local-launcher.js';
import { projectRoot } from '../../functions/src/project-root.js';
import { locateRuntimeFiles } from '../../functions/src/sandbox/local/runtime-files.js';
import { dataDirTag } from '../../functions/src/sandbox/local/sandbox-paths.js';
import { seccompProgram } from '../../functions/src/sandbox/local/seccomp-filter.js';
import { processMarker } from './stand-in-runner.js';

/**
 * How to open a launcher, as plain data: a test opens it in its own process, or hands it to a
 * process of its own (launcher-process.ts) that can then be killed.
 */
export type LauncherRecipe =
  | {
      adapter: 'local';
      /** Its sandboxes, sockets and seccomp program live here. */
      dataDir: string;
      /** The loopback port a sandbox's connections to the API go to. */
      apiPort: number;
      /** The program a sandbox runs in place of the runner bundle. */
      runner: string;
    }
  | { adapter: 'cloudrun'; endpoint: { host: string; port: number }; jobName: string; apiUrl: string };

export const SYSTEM_PATH = '/usr/local/bin:/usr/bin:/bin';
const MiB = 1024 * 1024;
/** Small enough for a program to exhaust in a moment, large enough for Node to start. */
export const SANDBOX_MEMORY_BYTES = 256 * MiB;

export async function openLauncher(recipe: LauncherRecipe, log: (line: string) => void = () => {}): Promise<SandboxLauncher> {
  if (recipe.adapter === 'cloudrun') {
    // The REST transport, as the service speaks to a stand-in of the Admin API (cloudrun/index.ts).
    const clientOptions = {
      fallback: true,
      apiEndpoint: recipe.endpoint.host,
      port: recipe.endpoint.port,
      protocol: 'http',
      authClient: new PassThroughClient(),
    };
    return new CloudRunLauncher({
      jobs: new JobsClient(clientOptions),
      executions: new ExecutionsClient(clientOptions),
      jobName: recipe.jobName,
      apiUrl: recipe.apiUrl,
      // Short polls: an end is seen within a fraction of a second, not the production backoff.
      firstPollMs: 100,
      maxPollMs: 400,
      log,
    });
  }
  return LocalSandboxLauncher.create({
    sandboxesDir: path.join(recipe.dataDir, 'sandboxes'),
    socketsDir: path.join(recipe.dataDir, 'sockets'),
    seccomp: seccompProgram(path.join(projectRoot(), 'scripts', 'seccomp-filter.py'), recipe.dataDir),
    connectApi: forwardToPort(recipe.apiPort),
    limits: { memoryBytes: SANDBOX_MEMORY_BYTES, cpus: 1, pids: 64 },
    disk: { diskBytes: 32 * MiB, tmpBytes: 16 * MiB, files: 1000 },
    runtime: { ...locateRuntimeFiles(), runner: recipe.runner },
    cgroups: await openCgroups(),
    runningAsRoot: process.getuid?.() === 0,
    systemPath: SYSTEM_PATH,
    log: (turnId, line) => log(`sandbox ${turnId.slice(0, 8)}: ${line}`),
  });
}

/*
 * What is left of a sandbox is read synchronously: read the moment its `ended` settles, nothing
 * of the launcher's own teardown can run in between.
 */

/** Processes on this machine whose command line names the turn's stand-in (processMarker). */
export function standInProcesses(turnId: string): string[] {
  const marker = processMarker(turnId);
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    const cmdline = readOr(() => readFileSync(`/proc/${pid}/cmdline`, 'utf8'), '');
    if (cmdline.includes(marker)) found.push(`process ${pid} (${cmdline.split('\0')[0]})`);
  }
  return found;
}

/**
 * What a local launcher on `dataDir` keeps of one sandbox on the host while it runs: its
 * directory, its socket directory and its cgroup(s), found wherever the cgroup tree puts them.
 */
export function localSandboxFiles(dataDir: string, turnId: string): string[] {
  const sandboxesDir = path.join(dataDir, 'sandboxes');
  const dirs = [path.join(sandboxesDir, turnId), path.join(dataDir, 'sockets', turnId)].filter((dir) => existsSync(dir));
  return [...dirs, ...findDirs('/sys/fs/cgroup', `turn-${dataDirTag(sandboxesDir)}-${turnId}`, 8)];
}

function findDirs(root: string, name: string, depth: number): string[] {
  if (depth === 0) return [];
  const entries = readOr(() => readdirSync(root, { withFileTypes: true }), []);
  const found: string[] = [];
  for (const entry of entries) {
    if (!entry.isDirectory()) continue;
    const dir = path.join(root, entry.name);
    if (entry.name === name) found.push(dir);
    else found.push(...findDirs(dir, name, depth - 1));
  }
  return found;
}

/** A process or directory may go while it is being read. */
function readOr<T>(read: () => T, otherwise: T): T {
  try {
    return read();
  } catch {
    return otherwise;
  }
}
