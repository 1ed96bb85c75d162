import { spawn } from 'node:child_process';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/**
 * A conversation's state is one gzipped tar of the agent's session files and the workspace,
 * stored by path relative to "/" so that it unpacks to the same places in the next sandbox.
 */

export interface StateLocations {
  home: string;
  workspace: string;
}

const sessionDir = (home: string) => path.join(home, '.claude', 'projects');
const relative = (absolute: string) => path.relative('/', absolute);

export async function restoreState(archive: Readable): Promise<void> {
  const tar = spawn('tar', ['-xzf', '-', '-C', '/', '--no-same-owner', '--no-overwrite-dir'], { stdio: ['pipe', 'ignore', 'pipe'] });
  const stderr = collect(tar.stderr);
  const exited = exitCode(tar);
  await pipeline(archive, tar.stdin);
  const code = await exited;
  if (code !== 0) throw new Error(`restoring state failed (tar exit ${code}): ${stderr()}`);
}

/** Writes the archive to `file` and returns its size. */
export async function archiveState(locations: StateLocations, file: string): Promise<number> {
  const tar = spawn(
    'tar',
    ['-czf', file, '-C', '/', '--ignore-failed-read', relative(sessionDir(locations.home)), relative(locations.workspace)],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const stderr = collect(tar.stderr);
  const code = await exitCode(tar);
  if (code !== 0) throw new Error(`saving state failed (tar exit ${code}): ${stderr()}`);
  return (await stat(file)).size;
}

function exitCode(child: ReturnType<typeof spawn>): Promise<number | null> {
  return new Promise((resolve, reject) => child.once('error', reject).once('close', (code) => resolve(code)));
}

function collect(stream: Readable): () => string {
  let text = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    text = (text + chunk).slice(-2000);
  });
  return () => text.trim();
}
