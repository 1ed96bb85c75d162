import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chown, mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { SandboxEnd, SandboxHandle, SandboxLauncher, SandboxSpec } from '../launcher.js';
import { openApiBridge, type ApiConnector } from './api-bridge.js';
import { bwrapArgs, SANDBOX_API_PORT, SANDBOX_GID, SANDBOX_UID, type HostPaths } from './bwrap-command.js';
import { commandInCgroup, type CgroupDriver, type CgroupLimits } from './cgroups.js';

export interface LocalLauncherOptions {
  /** Per-turn directories (home, workspace, bridge socket) live here while a turn runs. */
  sandboxesDir: string;
  /** Where a sandbox's connections to the API go: the runner's listener, nothing public. */
  connectApi: ApiConnector;
  limits: CgroupLimits;
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
   * cgroups go too. Only this data dir's: other services on the machine keep theirs.
   */
  static async create(options: LocalLauncherOptions): Promise<LocalSandboxLauncher> {
    await rm(options.sandboxesDir, { recursive: true, force: true });
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
    const host: HostPaths = {
      ...o.runtime,
      home: path.join(dir, 'home'),
      workspace: path.join(dir, 'workspace'),
      runDir: path.join(dir, 'run'),
    };
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true, mode: 0o711 });
    for (const writable of [host.home, host.workspace, host.runDir]) {
      await mkdir(writable, { mode: 0o755 });
      if (o.runningAsRoot) await chown(writable, SANDBOX_UID, SANDBOX_GID);
    }
    const cgroup = await o.cgroups.create(`${this.cgroupPrefix}${spec.turnId}`, o.limits);
    const bridge = await openApiBridge(path.join(host.runDir, 'api.sock'), o.connectApi);

    const args = bwrapArgs({
      host,
      runningAsRoot: o.runningAsRoot,
      env: { TURN_ID: spec.turnId, TURN_TOKEN: spec.token, API_URL: `http://127.0.0.1:${SANDBOX_API_PORT}` },
    });
    const command = commandInCgroup(cgroup, ['bwrap', ...args], o.systemPath);
    const child = spawn(command.file, command.args, { env: command.env, stdio: ['ignore', 'pipe', 'pipe'] });
    forwardLines(child.stdout, (line) => o.log(spec.turnId, line));
    forwardLines(child.stderr, (line) => o.log(spec.turnId, line));

    let stopReason: 'timed_out' | 'cancelled' | undefined;
    const stop = (reason: 'timed_out' | 'cancelled') => {
      stopReason ??= reason;
      return cgroup.killAll();
    };
    const timer = setTimeout(() => void stop('timed_out'), spec.timeoutSeconds * 1000);

    const ended = new Promise<SandboxEnd>((resolve) => {
      child.once('close', (exitCode, signal) => {
        clearTimeout(timer);
        void (async () => {
          await cgroup.killAll(); // anything the agent left behind (daemons, socat)
          const outOfMemory = await cgroup.outOfMemory();
          await cgroup.remove().catch((error: unknown) => o.log(spec.turnId, `cgroup removal failed: ${String(error)}`));
          await bridge.close();
          await rm(dir, { recursive: true, force: true });
          resolve(stopReason !== undefined ? { kind: stopReason } : { kind: 'exited', exitCode, signal, outOfMemory });
        })();
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

function forwardLines(stream: NodeJS.ReadableStream, sink: (line: string) => void): void {
  let pending = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    pending += chunk;
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) if (line.trim() !== '') sink(line);
  });
  stream.on('end', () => {
    if (pending.trim() !== '') sink(pending);
  });
}
