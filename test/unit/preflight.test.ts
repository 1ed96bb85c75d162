import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseProcCgroup, oomKillCount } from '../../functions/src/sandbox/local/cgroups.js';
import { checkIsolationTools } from '../../functions/src/sandbox/local/preflight.js';

describe('local sandbox preflight', () => {
  it('names every missing tool and never runs unisolated', () => {
    const empty = mkdtempSync(path.join(tmpdir(), 'no-tools-'));
    expect(() => checkIsolationTools(true, empty)).toThrow(/bwrap is not installed.*bubblewrap.*socat is not installed.*setpriv is not installed/);
  });

  it('passes on this machine, where the tools are installed', () => {
    expect(() => checkIsolationTools(process.getuid?.() === 0, '/usr/local/bin:/usr/bin:/bin')).not.toThrow();
  });
});

describe('cgroup bookkeeping', () => {
  it('reads v1 and v2 membership from /proc/self/cgroup', () => {
    const map = parseProcCgroup('12:pids:/a\n4:memory:/b/c\n2:cpu,cpuacct:/d\n0::/unified\n');
    expect(Object.fromEntries(map)).toEqual({ pids: '/a', memory: '/b/c', cpu: '/d', cpuacct: '/d', '': '/unified' });
  });

  it('counts OOM kills from memory.oom_control (v1) or memory.events (v2)', () => {
    expect(oomKillCount('oom_kill_disable 0\nunder_oom 0\noom_kill 3\n')).toBe(3);
    expect(oomKillCount('low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n')).toBe(1);
    expect(oomKillCount(undefined)).toBe(0);
  });
});
