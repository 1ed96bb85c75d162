import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SandboxUnavailableError } from '../launcher.js';

/**
 * Kernel-enforced limits for one sandbox: a cgroup (v1 or v2) per turn, created under the
 * service's own cgroup so that it works wherever the service was given a delegated subtree.
 */

export interface CgroupLimits {
  memoryBytes: number;
  cpus: number;
  pids: number;
}

export interface SandboxCgroup {
  /** Files a process writes its pid into to enter the cgroup (one per v1 controller). */
  readonly procsFiles: string[];
  /** Whether the kernel OOM-killed anything in it. */
  outOfMemory(): Promise<boolean>;
  /** Pids still in it. */
  pids(): Promise<number[]>;
  killAll(): Promise<void>;
  remove(): Promise<void>;
}

export interface CgroupDriver {
  readonly version: 1 | 2;
  create(name: string, limits: CgroupLimits): Promise<SandboxCgroup>;
  /** Stops and removes the cgroups named with this prefix that a previous process left behind. */
  removeStale(prefix: string): Promise<void>;
}

const CONTROLLERS = ['memory', 'pids', 'cpu'] as const;

const ENTER_AND_EXEC = `
IFS=:
for f in $CLAUDERUN_CGROUP_PROCS; do echo $$ > "$f" || exit 125; done
unset IFS CLAUDERUN_CGROUP_PROCS
exec "$@"`;

/**
 * A command that enters the cgroup and then execs `argv`, so that no process of it ever runs
 * outside the cgroup (adding a pid after spawn would race with its first fork). Exit code 125
 * means the cgroup could not be entered.
 */
export function commandInCgroup(cgroup: SandboxCgroup, argv: string[], searchPath: string) {
  return {
    file: '/bin/sh',
    args: ['-c', ENTER_AND_EXEC, 'sh', ...argv],
    env: { PATH: searchPath, CLAUDERUN_CGROUP_PROCS: cgroup.procsFiles.join(':') },
  };
}
const CPU_PERIOD_US = 100_000;

/** Finds a usable hierarchy or says exactly what is missing. */
export async function openCgroups(root = '/sys/fs/cgroup'): Promise<CgroupDriver> {
  const ownership = parseProcCgroup(await readFile('/proc/self/cgroup', 'utf8'));
  const problems: string[] = [];
  const v2Controllers = await readOptional(path.join(root, 'cgroup.controllers'));
  if (v2Controllers !== undefined) {
    const available = v2Controllers.trim().split(/\s+/);
    const missing = CONTROLLERS.filter((c) => !available.includes(c));
    if (missing.length === 0) return CgroupV2.open(root, ownership.get('') ?? '/');
    problems.push(`cgroup v2 at ${root} lacks the ${missing.join(', ')} controller(s)`);
  }
  const v1Missing = CONTROLLERS.filter((c) => !existsSync(path.join(root, c, 'cgroup.procs')));
  if (v1Missing.length === 0) return CgroupV1.open(root, ownership);
  problems.push(`cgroup v1 has no ${v1Missing.join(', ')} hierarchy under ${root}`);
  throw new SandboxUnavailableError(`cgroups: no usable hierarchy with memory, pids and cpu controllers (${problems.join('; ')})`);
}

/** Maps each v1 controller (and "" for v2) to this process's cgroup path. */
export function parseProcCgroup(text: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const line of text.split('\n')) {
    const match = /^\d+:([^:]*):(.*)$/.exec(line.trim());
    if (!match) continue;
    const [, controllers = '', cgroupPath = '/'] = match;
    if (controllers === '') map.set('', cgroupPath);
    for (const c of controllers.split(',')) if (c !== '') map.set(c, cgroupPath);
  }
  return map;
}

class CgroupV1 implements CgroupDriver {
  readonly version = 1;
  private constructor(private readonly bases: Record<(typeof CONTROLLERS)[number], string>) {}

  static async open(root: string, ownership: Map<string, string>): Promise<CgroupV1> {
    const base = (c: string) => path.join(root, c, ownership.get(c) ?? '/', 'clauderun');
    const bases = { memory: base('memory'), pids: base('pids'), cpu: base('cpu') };
    for (const dir of Object.values(bases)) await mkdirOrExplain(dir);
    return new CgroupV1(bases);
  }

  async removeStale(prefix: string): Promise<void> {
    for (const base of Object.values(this.bases)) await removeStale(base, prefix);
  }

  async create(name: string, limits: CgroupLimits): Promise<SandboxCgroup> {
    const dirs = { memory: path.join(this.bases.memory, name), pids: path.join(this.bases.pids, name), cpu: path.join(this.bases.cpu, name) };
    for (const dir of Object.values(dirs)) await mkdir(dir, { recursive: true });
    await writeFile(path.join(dirs.memory, 'memory.limit_in_bytes'), String(limits.memoryBytes));
    // Without this, a sandbox could spill past its limit into swap where swap exists.
    const memsw = path.join(dirs.memory, 'memory.memsw.limit_in_bytes');
    if (existsSync(memsw)) await writeFile(memsw, String(limits.memoryBytes));
    await writeFile(path.join(dirs.pids, 'pids.max'), String(limits.pids));
    await writeFile(path.join(dirs.cpu, 'cpu.cfs_period_us'), String(CPU_PERIOD_US));
    await writeFile(path.join(dirs.cpu, 'cpu.cfs_quota_us'), String(Math.round(limits.cpus * CPU_PERIOD_US)));
    const all = Object.values(dirs);
    return {
      procsFiles: all.map((dir) => path.join(dir, 'cgroup.procs')),
      outOfMemory: async () => oomKillCount(await readOptional(path.join(dirs.memory, 'memory.oom_control'))) > 0,
      pids: () => readPids(dirs.pids),
      killAll: () => killLoop(dirs.pids),
      remove: () => removeDirs(all),
    };
  }
}

class CgroupV2 implements CgroupDriver {
  readonly version = 2;
  private constructor(private readonly base: string) {}

  static async open(root: string, ownPath: string): Promise<CgroupV2> {
    const own = path.join(root, ownPath);
    const enable = `+${CONTROLLERS.join(' +')}`;
    if (own !== root) {
      // "No internal processes": controllers can be handed to children only once this
      // cgroup holds no process itself, so the service moves into a leaf of its own.
      const procs = await readPids(own);
      if (procs.length > 0) {
        const leaf = path.join(own, 'service');
        await mkdirOrExplain(leaf);
        for (const pid of procs) await writeFile(path.join(leaf, 'cgroup.procs'), String(pid)).catch(() => undefined);
      }
    }
    await writeFile(path.join(own, 'cgroup.subtree_control'), enable).catch((error: unknown) => {
      throw new SandboxUnavailableError(`cgroups: cannot enable ${enable} in ${own}: ${String(error)} (is this subtree delegated?)`);
    });
    const base = path.join(own, 'clauderun');
    await mkdirOrExplain(base);
    await writeFile(path.join(base, 'cgroup.subtree_control'), enable);
    return new CgroupV2(base);
  }

  removeStale(prefix: string): Promise<void> {
    return removeStale(this.base, prefix);
  }

  async create(name: string, limits: CgroupLimits): Promise<SandboxCgroup> {
    const dir = path.join(this.base, name);
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'memory.max'), String(limits.memoryBytes));
    if (existsSync(path.join(dir, 'memory.swap.max'))) await writeFile(path.join(dir, 'memory.swap.max'), '0');
    await writeFile(path.join(dir, 'pids.max'), String(limits.pids));
    await writeFile(path.join(dir, 'cpu.max'), `${Math.round(limits.cpus * CPU_PERIOD_US)} ${CPU_PERIOD_US}`);
    return {
      procsFiles: [path.join(dir, 'cgroup.procs')],
      outOfMemory: async () => oomKillCount(await readOptional(path.join(dir, 'memory.events'))) > 0,
      pids: () => readPids(dir),
      killAll: async () => {
        const killFile = path.join(dir, 'cgroup.kill');
        if (existsSync(killFile)) await writeFile(killFile, '1');
        await killLoop(dir);
      },
      remove: () => removeDirs([dir]),
    };
  }
}

export function oomKillCount(text: string | undefined): number {
  const match = /^oom_kill (\d+)$/m.exec(text ?? '');
  return match?.[1] === undefined ? 0 : Number(match[1]);
}

/** The pids in a cgroup; none once it is gone. Any other failure to read is thrown, never taken for "empty". */
async function readPids(dir: string): Promise<number[]> {
  let text: string;
  try {
    text = await readFile(path.join(dir, 'cgroup.procs'), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map(Number);
}

/**
 * Kills until empty: a fork bomb may spawn between reading the list and killing it. A list that
 * cannot be read (the process out of open files, say) is read again, not taken for empty.
 */
async function killLoop(dir: string): Promise<void> {
  let lastError: unknown;
  for (let round = 0; round < 200; round++) {
    let pids: number[];
    try {
      pids = await readPids(dir);
    } catch (error) {
      lastError = error;
      await sleep(50);
      continue;
    }
    if (pids.length === 0) return;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await sleep(10);
  }
  throw new Error(`the processes of ${path.basename(dir)} could not all be killed${lastError === undefined ? '' : `: ${String(lastError)}`}`);
}

async function removeDirs(dirs: string[]): Promise<void> {
  for (const dir of dirs) {
    for (let attempt = 0; ; attempt++) {
      try {
        await rmdir(dir);
        break;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') break;
        if (attempt >= 50) throw error;
        await sleep(20); // EBUSY until the last killed process is reaped
      }
    }
  }
}

/** Sandboxes a previous process left behind (it was killed): stop what runs there, remove them. */
async function removeStale(base: string, prefix: string): Promise<void> {
  const children = (await readdir(base, { withFileTypes: true })).filter((d) => d.isDirectory() && d.name.startsWith(prefix));
  for (const child of children) {
    const dir = path.join(base, child.name);
    await killLoop(dir);
    await removeDirs([dir]);
  }
}

async function mkdirOrExplain(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (error) {
    throw new SandboxUnavailableError(
      `cgroups: cannot create ${dir}: ${(error as Error).message} (run as root or delegate a cgroup subtree to the service)`,
    );
  }
}

async function readOptional(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch {
    return undefined;
  }
}
