import { spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';

/**
 * Removes a directory a sandbox may have shaped: trees deeper than PATH_MAX, names at NAME_MAX,
 * directories without permissions, fifos, sockets, symlinks to the host. Node's recursive rm
 * builds full paths and fails past PATH_MAX (ENAMETOOLONG); GNU rm walks with openat and never
 * follows symlinks, so it takes over whatever Node's leaves. Never crosses into another mount.
 */
export async function removeTree(dir: string, systemPath: string): Promise<void> {
  try {
    await rm(dir, { recursive: true, force: true, maxRetries: 2 });
    return;
  } catch {
    // fall through to the tools that walk by file descriptor
  }
  const env = { PATH: systemPath };
  // Without root, a directory made unreadable by its owner (the sandbox user maps to us) must be
  // opened up before it can be emptied; chmod -R does not follow symlinks.
  await run('chmod', ['-R', 'u+rwx', '--', dir], env).catch(() => undefined);
  await run('rm', ['-rf', '--one-file-system', '--', dir], env);
}

function run(file: string, args: string[], env: Record<string, string>): Promise<void> {
  return new Promise((resolve, reject) => {
    let stderr = '';
    const child = spawn(file, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-1000);
    });
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`${file} exited with ${code}: ${stderr.trim()}`))));
  });
}
