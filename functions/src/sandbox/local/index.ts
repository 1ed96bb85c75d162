import path from 'node:path';
import type { ApiConnector } from './api-bridge.js';
import { openCgroups, type CgroupLimits } from './cgroups.js';
import { LocalSandboxLauncher } from './local-launcher.js';
import { checkIsolationTools } from './preflight.js';
import { locateRuntimeFiles } from './runtime-files.js';

export interface LocalSandboxSettings {
  dataDir: string;
  /** Where a sandbox's connections to the API go (the runner's listener), the only place it can reach. */
  connectApi: ApiConnector;
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
    connectApi: settings.connectApi,
    limits: settings.limits,
    runtime: locateRuntimeFiles(),
    cgroups: await openCgroups(),
    runningAsRoot,
    systemPath: settings.systemPath,
    log: (turnId, line) => settings.log(`sandbox ${turnId.slice(0, 8)}: ${line}`),
  });
}
