import { spawn } from 'node:child_process';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { byteLimit } from '../../functions/src/byte-limit.js';
import { RUNNER_LIMITS, tailOf } from '../../functions/src/contract/runner-limits.js';
import { AGENT_SESSIONS_DIR, SANDBOX_LAYOUT } from '../../functions/src/contract/sandbox-layout.js';

/**
 * A conversation's state is one gzipped tar of the agent's session files and the workspace,
 * stored under the names they have in every sandbox (SANDBOX_LAYOUT, relative to "/"): the API
 * reads it by those names, and the next sandbox unpacks it to wherever its own home and
 * workspace are (the same places in a sandbox; elsewhere when the runner runs on a host).
 */

export interface StateLocations {
  home: string;
  workspace: string;
}

const sessionDir = (home: string) => path.join(home, AGENT_SESSIONS_DIR);
const relative = (absolute: string) => path.relative('/', absolute);

/** The canonical names of the two trees a state keeps. */
const STORED = { workspace: relative(SANDBOX_LAYOUT.workspace), sessions: relative(sessionDir(SANDBOX_LAYOUT.home)) };

/** A basic regular expression matching `text` literally. */
const literally = (text: string) => text.replace(/[\\.*[\]^$]/g, '\\$&');

/**
 * GNU tar's --transform renaming the tree `from` to `to` (names relative to "/"): members and
 * hard link targets, never a symlink's text (flag S), and only the tree itself (`from` followed
 * by "/" or nothing).
 */
const renamed = (from: string, to: string) => `--transform=s,^${literally(from)}\\(/\\|$\\),${to.replace(/[\\&,]/g, '\\$&')}\\1,S`;

/** The tar options that store the two trees under their canonical names, or unpack them from those. */
function canonicalNames(locations: StateLocations, direction: 'store' | 'restore'): string[] {
  const trees = [
    [relative(locations.workspace), STORED.workspace],
    [relative(sessionDir(locations.home)), STORED.sessions],
  ] as const;
  return trees.map(([here, stored]) => (direction === 'store' ? renamed(here, stored) : renamed(stored, here)));
}

/** A saved state that expands past the sandbox's disk: refused before it fills anything. */
export class StateTooLargeError extends Error {
  override name = 'StateTooLargeError';
}

/**
 * Unpacks a state archive, counting what it expands to as it goes (gunzip here, tar after the
 * count): a few MB of gzip can expand to GBs, and nothing past `maxBytes` is ever written.
 */
export async function restoreState(archive: Readable, locations: StateLocations, maxBytes: number): Promise<void> {
  const tar = spawn('tar', ['-xf', '-', '-C', '/', '--no-same-owner', '--no-overwrite-dir', ...canonicalNames(locations, 'restore')], {
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  const stderr = collect(tar.stderr);
  const exited = exitCode(tar);
  // tar stops reading at the archive's end marker, before the padding after it: a write error
  // then means nothing once tar has succeeded.
  const tooLarge = () =>
    new StateTooLargeError(
      `the conversation's saved state expands to more than ${maxBytes} bytes, over the sandbox's disk budget; it was not restored`,
    );
  const fed = pipeline(archive, createGunzip(), byteLimit(maxBytes, tooLarge).stream, tar.stdin).then(
    () => undefined,
    (error: unknown) => error as Error,
  );
  const fedError = await fed;
  if (fedError instanceof StateTooLargeError) {
    tar.kill('SIGKILL');
    await exited.catch(() => undefined);
    throw fedError;
  }
  const code = await exited;
  if (code !== 0) throw new Error(`restoring state failed (tar exit ${code}): ${stderr() || fedError?.message || ''}`);
}

/**
 * tar stores a path of any length but cannot extract one past PATH_MAX (4096): a state holding
 * one would fail every later turn of its conversation. Such a state is refused when saved.
 */
const MAX_RESTORABLE_PATH = 4000;

export type Archive = { ok: true; data: Buffer } | { ok: false; reason: string };

/**
 * The state archive, in memory: it is at most `maxBytes` (the API's limit), and a sandbox whose
 * disk or /tmp is full must still be able to save its state.
 */
export async function archiveState(locations: StateLocations, maxBytes: number): Promise<Archive> {
  const tooLong = await firstPathOver([sessionDir(locations.home), locations.workspace], MAX_RESTORABLE_PATH);
  if (tooLong !== undefined) {
    return {
      ok: false,
      reason: `the workspace holds a path of ${tooLong} characters, longer than a state can restore (${MAX_RESTORABLE_PATH}); the state was not saved, the previous state is kept`,
    };
  }
  const trees = [relative(sessionDir(locations.home)), relative(locations.workspace)];
  const tar = spawn('tar', ['-czf', '-', '-C', '/', '--ignore-failed-read', ...canonicalNames(locations, 'store'), ...trees], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stderr = collect(tar.stderr);
  const exited = exitCode(tar);
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of tar.stdout as AsyncIterable<Buffer>) {
    bytes += chunk.length;
    if (bytes > maxBytes) break; // leaving the loop closes tar's stdout
    chunks.push(chunk);
  }
  if (bytes > maxBytes) {
    tar.kill('SIGKILL');
    await exited.catch(() => undefined);
    return {
      ok: false,
      reason: `the conversation's state (agent session and workspace) is more than ${maxBytes} bytes compressed, over the limit of ${maxBytes}; the previous state is kept`,
    };
  }
  const code = await exited;
  if (code !== 0) throw new Error(`saving state failed (tar exit ${code}): ${stderr()}`);
  return { ok: true, data: Buffer.concat(chunks) };
}

/** The length of the first path under `roots` longer than `limit`, found by find (which walks any depth). */
async function firstPathOver(roots: string[], limit: number): Promise<number | undefined> {
  const find = spawn('find', [...roots, '-print0'], { stdio: ['ignore', 'pipe', 'ignore'] });
  let found: number | undefined;
  let pending = 0;
  find.stdout.on('data', (chunk: Buffer) => {
    for (const byte of chunk) {
      if (byte !== 0) pending++;
      else {
        if (pending > limit) found ??= pending;
        pending = 0;
      }
    }
    if (found !== undefined) find.kill();
  });
  await exitCode(find); // a root that does not exist yet is no problem
  return found;
}

function exitCode(child: ReturnType<typeof spawn>): Promise<number | null> {
  return new Promise((resolve, reject) => child.once('error', reject).once('close', (code) => resolve(code)));
}

function collect(stream: Readable): () => string {
  let text = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    // Only what can end up in a result's reason.
    text = tailOf(text + chunk, RUNNER_LIMITS.reasonChars);
  });
  return () => text.trim();
}
