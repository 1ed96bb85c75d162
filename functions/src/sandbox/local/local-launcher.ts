import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, rename } from 'node:fs/promises';
import path from 'node:path';
import type { SandboxEnd, SandboxHandle, SandboxLauncher, SandboxSpec } from '../launcher.js';
import { openApiBridge } from './api-bridge.js';
import { bwrapArgs, SANDBOX_API_PORT, type HostPaths } from './bwrap-command.js';
import { commandInCgroup, type CgroupDriver, type CgroupLimits, type SandboxCgroup } from './cgroups.js';
import { cappedLog } from './log-lines.js';
import { removeTree } from './remove-tree.js';
import { planDisk, type DiskLimits } from './sandbox-disk.js';

export interface LocalLauncherOptions {
  /** Per-turn directories (the bridge socket, empty mount points) live here while a turn runs. */
  sandboxesDir: string;
  apiPort: number;
  limits: CgroupLimits;
  disk: DiskLimits;
  runtime: Pick<HostPaths, 'node' | 'claude' | 'runner' | 'shellPrefix'>;
  cgroups: CgroupDriver;
  runningAsRoot: boolean;
  /** PATH for finding bwrap and setpriv on the host. */
  systemPath: string;
  /** Receives the sandbox's stderr, line by line, for the service log. */
  log: (turnId: string, line: string) => void;
}

/** Runs each turn in a fresh bubblewrap sandbox inside its own cgroup; all of it is gone at the end. */
export class LocalSandboxLauncher implements SandboxLauncher {
  readonly name = 'local';
  private readonly running = new Set<SandboxHandle>();

  private constructor(private readonly options: LocalLauncherOptions) {}

  /**
   * Sandboxes of a previous process died with it (--die-with-parent); their directories and
   * cgroups go too. Only this data dir's: other services on the machine keep theirs. Whatever
   * state the directory was left in, start-up goes on: what cannot be removed is moved aside.
   */
  static async create(options: LocalLauncherOptions): Promise<LocalSandboxLauncher> {
    await removeTree(options.sandboxesDir, options.systemPath).catch(async (error: unknown) => {
      const aside = `${options.sandboxesDir}.stale-${Date.now()}`;
      options.log('-', `could not remove ${options.sandboxesDir} (${String(error)}); moved it to ${aside}`);
      await rename(options.sandboxesDir, aside);
    });
    await mkdir(options.sandboxesDir, { recursive: true, mode: 0o711 });
    const launcher = new LocalSandboxLauncher(options);
    await options.cgroups.removeStale(launcher.cgroupPrefix);
    return launcher;
  }

  /** Names this data dir's sandbox cgroups: `turn-<hash of the sandboxes dir>-<turn id>`. */
  private get cgroupPrefix(): string {
    return `turn-${createHash('sha256').update(path.resolve(this.options.sandboxesDir)).digest('hex').slice(0, 12)}-`;
  }

  async launch(spec: SandboxSpec): Promise<SandboxHandle> {
    const o = this.options;
    const dir = path.join(o.sandboxesDir, spec.turnId);
    const host: HostPaths = { ...o.runtime, runDir: path.join(dir, 'run') };
    const disk = planDisk(o.disk, dir, o.runningAsRoot);
    const log = (line: string) => o.log(spec.turnId, line);
    let cgroup: SandboxCgroup | undefined;
    let bridge: { close(): Promise<void> } | undefined;
    const cleanUp = () =>
      tearDown(log, [
        ['stopping its processes', () => cgroup?.killAll()],
        ['removing its cgroup', () => cgroup?.remove()],
        ['closing its API bridge', () => bridge?.close()],
        ['removing its directory', () => removeTree(dir, o.systemPath)],
      ]);
    try {
      await removeTree(dir, o.systemPath);
      await mkdir(dir, { recursive: true, mode: 0o711 });
      for (const mountPoint of disk.mountPoints) await mkdir(mountPoint, { mode: 0o700 });
      // The service's, not the sandbox's: mounted read-only, so the socket cannot be replaced.
      await mkdir(host.runDir, { mode: 0o755 });
      cgroup = await o.cgroups.create(`${this.cgroupPrefix}${spec.turnId}`, o.limits);
      bridge = await openApiBridge(path.join(host.runDir, 'api.sock'), o.apiPort);
    } catch (error) {
      await cleanUp();
      throw error;
    }
    const sandboxCgroup = cgroup;

    const args = bwrapArgs({
      host,
      storage: disk.storage,
      runningAsRoot: o.runningAsRoot,
      env: { TURN_ID: spec.turnId, TURN_TOKEN: spec.token, API_URL: `http://127.0.0.1:${SANDBOX_API_PORT}` },
    });
    const command = commandInCgroup(sandboxCgroup, [...disk.prefix, 'bwrap', ...args], o.systemPath);
    const child = spawn(command.file, command.args, { env: command.env, stdio: ['ignore', 'pipe', 'pipe'] });
    const output = cappedLog(log);
    const outputEnded = Promise.all([output.forward(child.stdout), output.forward(child.stderr)]);
    child.once('error', (error) => log(`could not start: ${error.message}`));

    let stopReason: 'timed_out' | 'cancelled' | undefined;
    const stop = (reason: 'timed_out' | 'cancelled') => {
      stopReason ??= reason;
      return sandboxCgroup.killAll();
    };
    const timer = setTimeout(() => void stop('timed_out').catch((error: unknown) => log(`stopping at the deadline failed: ${String(error)}`)), spec.timeoutSeconds * 1000);

    const ended = new Promise<SandboxEnd>((resolve) => {
      child.once('close', (exitCode, signal) => {
        clearTimeout(timer);
        let outOfMemory = false;
        void tearDown(log, [
          ['stopping what it left running', () => sandboxCgroup.killAll()], // daemons, socat
          ['reading its OOM count', async () => (outOfMemory = await sandboxCgroup.outOfMemory())],
          ['flushing its output', async () => (await outputEnded, output.finish())],
        ])
          .then(cleanUp)
          .then(() => resolve(stopReason !== undefined ? { kind: stopReason } : { kind: 'exited', exitCode, signal, outOfMemory }));
      });
    });
    const handle: SandboxHandle = { ref: `local:${spec.turnId}`, ended, cancel: () => stop('cancelled') };
    this.running.add(handle);
    void ended.then(() => this.running.delete(handle));
    return handle;
  }

  /** Local sandboxes die with the process that started them (--die-with-parent). */
  reattach(): undefined {
    return undefined;
  }

  async close(): Promise<void> {
    const all = [...this.running];
    await Promise.all(all.map((h) => h.cancel()));
    await Promise.all(all.map((h) => h.ended));
  }
}

/** Runs every step whatever the others do: one failing must not leave the rest undone. */
async function tearDown(log: (line: string) => void, steps: Array<[string, () => Promise<unknown> | undefined]>): Promise<void> {
  for (const [what, step] of steps) {
    try {
      await step();
    } catch (error) {
      log(`teardown: ${what} failed: ${(error as Error).message ?? String(error)}`);
    }
  }
}
