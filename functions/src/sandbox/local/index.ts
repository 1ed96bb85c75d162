import path from 'node:path';
import { projectRoot } from '../../project-root.js';
import { SandboxUnavailableError } from '../launcher.js';
import type { ApiConnector } from './api-bridge.js';
import { openCgroups, type CgroupLimits } from './cgroups.js';
import { LocalSandboxLauncher } from './local-launcher.js';
import { checkIsolationTools } from './preflight.js';
import { locateRuntimeFiles } from './runtime-files.js';
import { stageBinaries } from './runtime-stage.js';
import type { DiskLimits } from './sandbox-disk.js';
import { dataDirTag } from './sandbox-paths.js';
import { seccompProgram } from './seccomp-filter.js';

export { diskLimitsOf } from './sandbox-disk.js';

export interface LocalSandboxSettings {
  dataDir: string;
  /** Where a sandbox's connections to the API go (the runner's listener), the only place it can reach. */
  connectApi: ApiConnector;
  /** The path of the API's URL inside the sandbox (see LocalLauncherOptions.apiPath). */
  apiPath?: string;
  limits: CgroupLimits;
  disk: DiskLimits;
  systemPath: string;
  log: (message: string) => void;
}

/** A local launcher after checking that isolation really is available here (it never runs without). */
export async function createLocalLauncher(settings: LocalSandboxSettings): Promise<LocalSandboxLauncher> {
  const runningAsRoot = process.getuid?.() === 0;
  checkDiskFitsMemory(settings.disk, settings.limits);
  checkIsolationTools(runningAsRoot, settings.systemPath);
  const sandboxesDir = path.join(settings.dataDir, 'sandboxes');
  return LocalSandboxLauncher.create({
    sandboxesDir,
    socketsDir: runningAsRoot ? `/run/clauderun-${dataDirTag(sandboxesDir)}` : path.join(settings.dataDir, 'sockets'),
    seccomp: seccompProgram(path.join(projectRoot(), 'scripts', 'seccomp-filter.py'), settings.dataDir),
    connectApi: settings.connectApi,
    ...(settings.apiPath !== undefined ? { apiPath: settings.apiPath } : {}),
    limits: settings.limits,
    disk: settings.disk,
    runtime: await runtimeFiles(runningAsRoot),
    cgroups: await openCgroups(),
    runningAsRoot,
    systemPath: settings.systemPath,
    log: (turnId, line) => settings.log(`sandbox ${turnId.slice(0, 8)}: ${line}`),
  });
}

/**
 * The sandbox's files are memory (tmpfs charged to its cgroup): filled to the brim they must
 * still leave the agent room to run and report, or a full disk would kill it.
 */
function checkDiskFitsMemory(disk: DiskLimits, limits: CgroupLimits): void {
  const MiB = 1024 * 1024;
  const headroom = 256 * MiB;
  if (disk.diskBytes + disk.tmpBytes + headroom > limits.memoryBytes) {
    throw new SandboxUnavailableError(
      `CLAUDERUN_SANDBOX_DISK_MB + CLAUDERUN_SANDBOX_TMP_MB (${(disk.diskBytes + disk.tmpBytes) / MiB} MiB) must leave at least ` +
        `${headroom / MiB} MiB of CLAUDERUN_SANDBOX_MEMORY_MB (${limits.memoryBytes / MiB}) to the agent: the sandbox's files live in its memory`,
    );
  }
}

/** As root the binaries are bound from where their path names no host directory (runtime-stage.ts). */
async function runtimeFiles(runningAsRoot: boolean) {
  const files = locateRuntimeFiles();
  return runningAsRoot ? { ...files, ...(await stageBinaries({ node: files.node, claude: files.claude })) } : files;
}
