import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import path from 'node:path';
import { SandboxUnavailableError } from '../launcher.js';

/**
 * Debian's own Python with libseccomp's bindings (python3-seccomp): not whatever python3 comes
 * first on PATH, which may lack them.
 */
export const SECCOMP_PYTHON = '/usr/bin/python3';

/**
 * The sandbox's seccomp program (BPF, for bwrap --seccomp), made by scripts/seccomp-filter.py
 * with libseccomp and kept in the data dir under a name that changes with the script.
 */
export function seccompProgram(script: string, cacheDir: string): Buffer {
  const source = readFileSync(script);
  const cached = path.join(cacheDir, `seccomp-${createHash('sha256').update(source).digest('hex').slice(0, 16)}.bpf`);
  if (existsSync(cached)) {
    const program = readFileSync(cached);
    if (isBpf(program)) return program;
  }
  mkdirSync(cacheDir, { recursive: true, mode: 0o700 });
  const partial = `${cached}.${process.pid}.partial`;
  const made = spawnSync(SECCOMP_PYTHON, [script, partial], { encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } });
  if (made.status !== 0) {
    throw new SandboxUnavailableError(
      `cannot make the sandbox's seccomp filter with ${script}: ${(made.stderr || made.error?.message || '').trim()}`,
    );
  }
  renameSync(partial, cached);
  const program = readFileSync(cached);
  if (!isBpf(program)) throw new SandboxUnavailableError(`the seccomp filter ${cached} is not a BPF program`);
  return program;
}

/** A BPF program is a whole, non-zero number of 8-byte instructions. */
const isBpf = (program: Buffer) => program.length > 0 && program.length % 8 === 0;
