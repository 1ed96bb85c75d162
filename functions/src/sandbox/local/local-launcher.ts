import { spawn } from 'node:child_process';
import { mkdir, readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { runnerEnv, type SandboxCredentials } from '../../contract/runner-env.js';
import type { SandboxEnd, SandboxHandle, SandboxLauncher, SandboxSpec, WarmSandboxHandle, WarmSandboxSpec } from '../launcher.js';
import { openApiBridge, type ApiConnector } from './api-bridge.js';
import { bwrapArgs, type HostPaths, type StagedFiles } from './bwrap-command.js';
import { commandInCgroup, type CgroupDriver, type CgroupLimits, type SandboxCgroup } from './cgroups.js';
import { FdInputs } from './fd-inputs.js';
import { cappedLog } from './log-lines.js';
import type { RuntimeFiles } from './runtime-files.js';
import { removeTree } from './remove-tree.js';
import { planDisk, type DiskLimits } from './sandbox-disk.js';
import { dataDirTag, SANDBOX_API_PORT } from './sandbox-paths.js';
import { SandboxUids, USER_NAMESPACE_IDENTITY } from './sandbox-uids.js';

export interface LocalLauncherOptions {
  /** Per-turn directories (the bridge socket, empty mount points) live here while a turn runs. */
  sandboxesDir: string;
  /** Where a sandbox's connections to the API go: the runner's listener, nothing public. */
  connectApi: ApiConnector;
  /** The path of the API's URL as the sandbox sees it ('' locally; a stand-in may serve the API under a prefix). */
  apiPath?: string;
  limits: CgroupLimits;
  disk: DiskLimits;
  /**
   * Each turn's bridge socket gets a directory here. Its path shows in the sandbox's mount
   * table, so it should say nothing about the host (as root: under /run).
   */
  socketsDir: string;
  runtime: RuntimeFiles;
  /** The seccomp program every sandbox runs under (BPF). */
  seccomp: Buffer;
  cgroups: CgroupDriver;
  runningAsRoot: boolean;
  /** PATH for finding bwrap and setpriv on the host. */
  systemPath: string;
  /** Receives the sandbox's stderr, line by line, for the service log. */
  log: (turnId: string, line: string) => void;
}

const OUTPUT_FLUSH_MS = 2000;

/** Runs each turn in a fresh bubblewrap sandbox inside its own cgroup; all of it is gone at the end. */
export class LocalSandboxLauncher implements SandboxLauncher {
  readonly name = 'local';
  readonly sandboxesOutliveProcess = false;
  private readonly running = new Set<SandboxHandle>();
  private readonly uids: SandboxUids;

  private constructor(
    private readonly options: LocalLauncherOptions,
    private readonly staged: StagedFiles,
  ) {
    this.uids = new SandboxUids(options.sandboxesDir);
  }

  /**
   * Sandboxes of a previous process died with it (--die-with-parent); their directories and
   * cgroups go too. Only this data dir's: other services on the machine keep theirs. Whatever
   * state the directory was left in, start-up goes on: what cannot be removed is moved aside.
   */
  static async create(options: LocalLauncherOptions): Promise<LocalSandboxLauncher> {
    for (const dir of [options.sandboxesDir, options.socketsDir]) {
      await removeTree(dir, options.systemPath).catch(async (error: unknown) => {
        const aside = `${dir}.stale-${Date.now()}`;
        options.log('-', `could not remove ${dir} (${String(error)}); moved it to ${aside}`);
        await rename(dir, aside);
      });
      await mkdir(dir, { recursive: true, mode: 0o711 });
    }
    const staged = { runner: await readFile(options.runtime.runner), shellPrefix: await readFile(options.runtime.shellPrefix) };
    const launcher = new LocalSandboxLauncher(options, staged);
    await options.cgroups.removeStale(launcher.cgroupPrefix);
    return launcher;
  }

  /** Names this data dir's sandbox cgroups: `turn-<data dir tag>-<turn id>`. */
  private get cgroupPrefix(): string {
    return `turn-${dataDirTag(this.options.sandboxesDir)}-`;
  }

  launch(spec: SandboxSpec): Promise<SandboxHandle> {
    return this.start(spec.turnId, { turnId: spec.turnId, turnToken: spec.token }, spec.timeoutSeconds);
  }

  launchWarm(spec: WarmSandboxSpec): Promise<WarmSandboxHandle> {
    return this.start(spec.sandboxId, { sandboxId: spec.sandboxId, poolToken: spec.poolToken }, spec.timeoutSeconds);
  }

  /** A sandbox named `name` (its directory, cgroup and log lines) whose runner is handed `credentials`. */
  private async start(name: string, credentials: SandboxCredentials, timeoutSeconds: number): Promise<WarmSandboxHandle> {
    const o = this.options;
    const dir = path.join(o.sandboxesDir, name);
    const host: HostPaths = { node: o.runtime.node, claude: o.runtime.claude, runDir: path.join(o.socketsDir, name) };
    const identity = o.runningAsRoot ? this.uids.take() : USER_NAMESPACE_IDENTITY;
    const disk = planDisk(o.disk, dir, o.runningAsRoot, identity);
    const log = (line: string) => o.log(name, line);
    let cgroup: SandboxCgroup | undefined;
    let bridge: { close(): Promise<void> } | undefined;
    const cleanUp = () =>
      tearDown(log, [
        ['stopping its processes', () => cgroup?.killAll()],
        ['removing its cgroup', () => cgroup?.remove()],
        ['closing its API bridge', () => bridge?.close()],
        ['removing its directory', () => removeTree(dir, o.systemPath)],
        ['removing its socket directory', () => removeTree(host.runDir, o.systemPath)],
        // Its uid is free again only once nothing of the sandbox runs.
        ['freeing its uid', async () => this.uids.give(identity)],
      ]);
    try {
      await removeTree(dir, o.systemPath);
      await removeTree(host.runDir, o.systemPath);
      await mkdir(dir, { recursive: true, mode: 0o711 });
      for (const mountPoint of disk.mountPoints) await mkdir(mountPoint, { mode: 0o700 });
      // The service's, not the sandbox's: mounted read-only, so the socket cannot be replaced.
      await mkdir(host.runDir, { mode: 0o755 });
      cgroup = await o.cgroups.create(`${this.cgroupPrefix}${name}`, o.limits);
      bridge = await openApiBridge(path.join(host.runDir, 'api.sock'), o.connectApi);
    } catch (error) {
      await cleanUp();
      throw error;
    }
    const sandboxCgroup = cgroup;

    const inputs = new FdInputs();
    const bwrap = bwrapArgs({
      host,
      storage: disk.storage,
      runningAsRoot: o.runningAsRoot,
      identity,
      inputs,
      seccomp: o.seccomp,
      staged: this.staged,
      env: runnerEnv(credentials, `http://127.0.0.1:${SANDBOX_API_PORT}${o.apiPath ?? ''}`),
    });
    const command = commandInCgroup(sandboxCgroup, [...disk.prefix, 'bwrap', '--args', String(FdInputs.ARGS_FD), ...bwrap.command], o.systemPath);
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(command.file, command.args, { env: command.env, stdio: inputs.stdio() });
    } catch (error) {
      // Spawning can fail at once (out of open files, say): nothing of the turn may be left.
      await cleanUp();
      throw error;
    }
    inputs.feed(child, bwrap.options, (error) => log(`could not hand the sandbox its setup: ${error.message}`));
    const output = cappedLog(log);
    // stdout and stderr are pipes (inputs.stdio()), so never null here.
    const outputEnded = Promise.all([child.stdout, child.stderr].flatMap((stream) => (stream === null ? [] : [output.forward(stream)])));
    child.once('error', (error) => log(`could not start: ${error.message}`));

    let stopReason: 'timed_out' | 'cancelled' | undefined;
    const stop = (reason: 'timed_out' | 'cancelled') => {
      stopReason ??= reason;
      // Just after the launch its first process may not have entered the cgroup yet (it does so
      // before it forks anything): the cgroup alone would miss it, and the sandbox run on.
      child.kill('SIGKILL');
      return sandboxCgroup.killAll();
    };
    const deadline = (seconds: number) =>
      setTimeout(() => void stop('timed_out').catch((error: unknown) => log(`stopping at the deadline failed: ${String(error)}`)), seconds * 1000);
    let timer = deadline(timeoutSeconds);

    const ended = new Promise<SandboxEnd>((resolve) => {
      child.once('close', (exitCode, signal) => {
        clearTimeout(timer);
        let outOfMemory = false;
        void tearDown(log, [
          ['stopping what it left running', () => sandboxCgroup.killAll()], // daemons, socat
          ['reading its OOM count', async () => (outOfMemory = await sandboxCgroup.outOfMemory())],
          // Its pipes close with its last process; a bounded wait all the same, so that ended always settles.
          [
            'flushing its output',
            async () => {
              await Promise.race([outputEnded, sleep(OUTPUT_FLUSH_MS)]);
              output.finish();
            },
          ],
        ])
          .then(cleanUp)
          .then(() => resolve(stopReason !== undefined ? { kind: stopReason } : { kind: 'exited', exitCode, signal, outOfMemory }));
      });
    });
    const handle: WarmSandboxHandle = {
      ref: `local:${name}`,
      ended,
      cancel: () => stop('cancelled'),
      claimed: (seconds) => {
        clearTimeout(timer);
        timer = deadline(seconds);
      },
    };
    this.running.add(handle);
    void ended.then(() => this.running.delete(handle));
    return handle;
  }

  /** Local sandboxes die with the process that started them (--die-with-parent). */
  reattach(): undefined {
    return undefined;
  }

  /** The process that started a local sandbox follows it to its end: nothing to ask. */
  async status(): Promise<undefined> {
    return undefined;
  }

  async close(): Promise<void> {
    const all = [...this.running];
    await Promise.all(all.map((h) => h.cancel().catch(() => undefined)));
    await Promise.all(all.map((h) => h.ended));
    // Empty by now; outside the data dir (as root, under /run), so nothing else would remove it.
    await removeTree(this.options.socketsDir, this.options.systemPath).catch((error: unknown) =>
      this.options.log('-', `removing ${this.options.socketsDir} failed: ${String(error)}`),
    );
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
