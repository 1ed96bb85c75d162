import path from 'node:path';
import { openCgroups, type CgroupLimits } from './cgroups.js';
import { LocalSandboxLauncher } from './local-launcher.js';
import { checkIsolationTools } from './preflight.js';
import { locateRuntimeFiles } from './runtime-files.js';

export interface LocalSandboxSettings {
  dataDir: string;
  /** The API's loopback port, the only place a sandbox can reach. */
  apiPort: number;
  limits: CgroupLimits;
  systemPath: string;
  log: (message: string) => void;
}

/** A local launcher after checking that isolation really is available here (it never runs without). */
export async function createLocalLauncher(settings: LocalSandboxSettings): Promise<LocalSandboxLauncher> {
  const runningAsRoot = process.getuid?.() === 0;
  checkIsolationTools(runningAsRoot, settings.systemPath);
  return LocalSandboxLauncher.create({
    sandboxesDir: path.join(settings.dataDir, 'sandboxes'),
    apiPort: settings.apiPort,
    limits: settings.limits,
    runtime: locateRuntimeFiles(),
    cgroups: await openCgroups(),
    runningAsRoot,
    systemPath: settings.systemPath,
    log: (turnId, line) => settings.log(`sandbox ${turnId.slice(0, 8)}: ${line}`),
  });
}
