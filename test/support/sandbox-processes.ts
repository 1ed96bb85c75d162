import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { RunningService } from './service.js';

/**
 * The local launcher's name for a turn's sandbox (its directory and cgroup): the turn's own id for
 * a sandbox launched for it, a warm sandbox's id for one it claimed.
 */
export async function sandboxNameOf(service: RunningService, userId: string, conversationId: string, turnId: string): Promise<string> {
  const turn = await service.clauderun.service.getTurn(userId, conversationId, turnId);
  const name = /^local:(.+)$/.exec(turn.sandboxRef ?? '')?.[1];
  if (name === undefined) throw new Error(`turn ${turnId} has no local sandbox (${turn.sandboxRef})`);
  return name;
}

/**
 * A local sandbox's cgroup directory on the host: in cgroup v1 under `controller`'s hierarchy, in
 * v2 the one unified directory; undefined when this host has no such hierarchy.
 */
export function sandboxCgroupDir(name: string, controller: 'pids' | 'memory' = 'pids'): string | undefined {
  const own = readFileSync('/proc/self/cgroup', 'utf8');
  const v1 = new RegExp(`^\\d+:[^:]*\\b${controller}\\b[^:]*:(.*)$`, 'm').exec(own)?.[1];
  const v2 = /^0::(.*)$/m.exec(own)?.[1];
  const base = v1 !== undefined ? path.join('/sys/fs/cgroup', controller, v1) : v2 !== undefined ? path.join('/sys/fs/cgroup', v2) : undefined;
  if (base === undefined) return undefined;
  const sandboxes = path.join(base, 'clauderun');
  const cgroup = readdirSync(sandboxes).find((entry) => entry.startsWith('turn-') && entry.endsWith(`-${name}`));
  return cgroup === undefined ? undefined : path.join(sandboxes, cgroup);
}

/** Pids in a local sandbox's cgroup, read from the host. */
export function sandboxPids(name: string): number[] {
  const dir = sandboxCgroupDir(name);
  if (dir === undefined) throw new Error(`no cgroup for sandbox ${name}`);
  return readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
}

/** The sandbox's runner process, found by its command line. */
export function runnerPid(name: string): number | undefined {
  return sandboxPids(name).find((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('runner.mjs'));
}
