import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { projectRoot } from '../../../functions/src/project-root.js';
import { freePort } from '../../support/service.js';

/**
 * One instance of a function: a process of its own running the Functions Framework's own server
 * (`functions-framework --target=NAME`), which is what Cloud Functions runs for a Node.js
 * function (https://cloud.google.com/functions/docs/functions-framework), against the function's
 * source, with the environment the platform gives a container.
 */

export interface FunctionSource {
  /** The directory whose package.json `main` is the function's module, or the module itself. */
  dir: string;
  /** The function registered there (`--target`). */
  target: string;
}

/** The project's own function, as infra/function-source.ts uploads it: package.json `main`. */
export const CLAUDERUN_SOURCE: FunctionSource = { dir: projectRoot(), target: 'clauderun' };

export interface InstanceSettings {
  /** The function's name: K_SERVICE and the path prefix of its cloudfunctions.net URL. */
  name: string;
  source: FunctionSource;
  env: Record<string, string>;
  /** This instance's own writable directory, as each instance gets its own /tmp. */
  dataDir: string;
  log: (message: string) => void;
}

/** "Maximum container startup time": 4 minutes (https://cloud.google.com/run/quotas). */
const STARTUP_LIMIT_MS = 4 * 60_000;
/** After SIGTERM a container has 10 s, then SIGKILL (https://cloud.google.com/run/docs/container-contract#lifecycle). */
const SHUTDOWN_GRACE_MS = 10_000;

/** Compiled by `npm run build`; from the dist tree whether this module runs from there or from source (vitest). */
const LOOPBACK_ONLY = path.join(projectRoot(), 'dist', 'test', 'sim', 'platform', 'loopback-only.js');

export class FunctionInstance {
  private frozen = false;
  private exitCode: number | null | undefined;
  private readonly exited: Promise<void>;
  private output = '';

  private constructor(
    readonly id: number,
    readonly port: number,
    private readonly child: ChildProcess,
    log: (message: string) => void,
  ) {
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitCode = code ?? (signal === null ? null : -1);
        resolve();
      });
      child.once('error', (error) => {
        this.output += `\n${error.message}`;
        this.exitCode = -1;
        resolve();
      });
    });
    const keep = (chunk: Buffer) => {
      this.output = (this.output + chunk.toString()).slice(-20_000);
      for (const line of chunk.toString().split('\n')) if (line.trim() !== '') log(line);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  /** What it printed last, for error messages. */
  recentOutput(): string {
    return this.output.trim().slice(-4000);
  }

  /**
   * Starts the process and resolves once its port accepts connections: Cloud Run's default
   * startup probe is a TCP one on the container's port (https://cloud.google.com/run/docs/configuring/healthchecks).
   */
  static async start(id: number, settings: InstanceSettings): Promise<FunctionInstance> {
    const port = await freePort();
    await mkdir(settings.dataDir, { recursive: true, mode: 0o700 });
    const framework = realpathSync(path.join(projectRoot(), 'node_modules', '.bin', 'functions-framework'));
    // The variables a Cloud Run container gets (https://cloud.google.com/run/docs/container-contract#env-vars)
    // and those a function gets (https://cloud.google.com/functions/docs/configuring/env-var#runtime_environment_variables_set_automatically).
    const env = {
      PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
      ...settings.env,
      PORT: String(port),
      K_SERVICE: settings.name,
      K_REVISION: `${settings.name}-00001-sim`,
      K_CONFIGURATION: settings.name,
      FUNCTION_TARGET: settings.source.target,
      FUNCTION_SIGNATURE_TYPE: 'http',
      // Set on every function deployed through the Cloud Functions v2 API (infra/function-roles.ts
      // says where Google documents it): the framework then logs each request's execution id.
      LOG_EXECUTION_ID: 'true',
      CLAUDERUN_DATA_DIR: settings.dataDir,
    };
    const node = [
      // Binds the framework's server to loopback only: it listens on every interface otherwise.
      '--import',
      LOOPBACK_ONLY,
      '--disable-warning=ExperimentalWarning',
      framework,
      `--target=${settings.source.target}`,
      `--source=${settings.source.dir}`,
      '--signature-type=http',
    ];
    // The instance dies with the simulation even if that is killed: a frozen orphan would hold its
    // port and memory for good. setpriv sets the parent-death signal, then runs node.
    const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));
    const [file, args] = setpriv !== undefined ? [setpriv, ['--pdeathsig', 'KILL', '--', process.execPath, ...node]] : [process.execPath, node];
    const child = spawn(file, args, { cwd: settings.dataDir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const instance = new FunctionInstance(id, port, child, (line) => settings.log(`${settings.name}#${id}: ${line}`));
    const deadline = Date.now() + STARTUP_LIMIT_MS;
    while (Date.now() < deadline) {
      if (!instance.running) throw new Error(`instance ${settings.name}#${id} exited at start (${instance.exitCode}): ${instance.recentOutput()}`);
      if (await accepts(port)) return instance;
      await sleep(20);
    }
    await instance.stop();
    throw new Error(`instance ${settings.name}#${id} did not listen within ${STARTUP_LIMIT_MS / 1000} s: ${instance.recentOutput()}`);
  }

  /** No request in flight: the instance gets no CPU at all (SIGSTOP). */
  freeze(): void {
    if (this.frozen || !this.running) return;
    this.frozen = true;
    this.child.kill('SIGSTOP');
  }

  /** A request arrives: the instance runs again (SIGCONT). */
  thaw(): void {
    if (!this.frozen || !this.running) return;
    this.frozen = false;
    this.child.kill('SIGCONT');
  }

  /** Scale-in: SIGTERM with CPU to handle it, SIGKILL after the grace period. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.thaw();
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), SHUTDOWN_GRACE_MS);
    await this.exited;
    clearTimeout(timer);
  }

  /** Resolves when the process is gone, whatever ended it. */
  whenExited(): Promise<void> {
    return this.exited;
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
