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

/** Pids in a local sandbox's cgroup (v1 pids hierarchy or v2), read from the host. */
export function sandboxPids(name: string): number[] {
  const own = readFileSync('/proc/self/cgroup', 'utf8');
  const v1 = /^\d+:pids:(.*)$/m.exec(own)?.[1];
  const base = v1 !== undefined ? path.join('/sys/fs/cgroup/pids', v1) : path.join('/sys/fs/cgroup', /^0::(.*)$/m.exec(own)?.[1] ?? '/');
  const sandboxes = path.join(base, 'clauderun');
  const cgroup = readdirSync(sandboxes).find((entry) => entry.startsWith('turn-') && entry.endsWith(`-${name}`));
  if (cgroup === undefined) throw new Error(`no cgroup for sandbox ${name} in ${sandboxes}`);
  const procs = path.join(sandboxes, cgroup, 'cgroup.procs');
  return readFileSync(procs, 'utf8').split('\n').filter(Boolean).map(Number);
}

/** The sandbox's runner process, found by its command line. */
export function runnerPid(name: string): number | undefined {
  return sandboxPids(name).find((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('runner.mjs'));
}
