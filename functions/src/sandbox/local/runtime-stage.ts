import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, link, mkdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';

/**
 * A bind mount shows its source's path in the sandbox's /proc/self/mountinfo, and Node's and
 * Claude Code's binaries live in the project (node_modules): that path would tell a sandbox
 * where the service is installed. As root they are staged, once per version, under a path that
 * names nothing but their content (hard links where the filesystem allows, else copies).
 */
export const RUNTIME_CACHE = '/var/cache/clauderun';

export interface Binaries {
  node: string;
  claude: string;
}

export async function stageBinaries(binaries: Binaries, cacheRoot: string = RUNTIME_CACHE): Promise<Binaries> {
  const hash = createHash('sha256');
  for (const file of Object.values(binaries)) {
    const info = await stat(file);
    hash.update(`${file}\0${info.size}\0${info.mtimeMs}\0`);
  }
  const dir = path.join(cacheRoot, `runtime-${hash.digest('hex').slice(0, 16)}`);
  const staged: Binaries = { node: path.join(dir, 'node'), claude: path.join(dir, 'claude') };
  if (existsSync(staged.node) && existsSync(staged.claude)) return staged;

  const partial = `${dir}.partial-${process.pid}`;
  await rm(partial, { recursive: true, force: true });
  await mkdir(partial, { recursive: true, mode: 0o755 });
  for (const [name, source] of Object.entries(binaries)) {
    const target = path.join(partial, name);
    // A hard link shares the original's inode: its mode is left as it is (a copy gets 0755).
    await link(source, target).catch(async () => {
      await copyFile(source, target);
      await chmod(target, 0o755);
    });
  }
  // Another service may have staged the same version meanwhile: either copy will do.
  await rename(partial, dir).catch(() => rm(partial, { recursive: true, force: true }));
  return staged;
}
