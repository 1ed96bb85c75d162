import path from 'node:path';
import type { ReadEntry } from 'tar';
import type { WorkspaceEntryType } from '../contract/api.js';
import { AGENT_SESSIONS_DIR, SANDBOX_LAYOUT } from '../contract/sandbox-layout.js';
import { entryTypeOf } from './entry-type.js';
import { isWithin, MAX_STORED_PATH_BYTES, parentsOf, pathRuleBroken } from './workspace-path.js';

/**
 * What a state may hold: exactly what the runner's GNU tar writes of the agent's sessions and
 * the workspace, and nothing two tar readers could read differently. The API lists and changes a
 * state by what node-tar reads of it, and the next sandbox restores what GNU tar reads: a state
 * from a tampered sandbox (its agent can reach the runner's token) could otherwise hide files
 * from the listing, plant files outside the workspace (a hook in the agent's settings), or make a
 * client's change land under a symlink. Such a state is refused where it is stored.
 */

/** The two trees a state keeps, as names relative to "/". */
const ROOTS = [path.relative('/', SANDBOX_LAYOUT.workspace), path.relative('/', path.join(SANDBOX_LAYOUT.home, AGENT_SESSIONS_DIR))];

/**
 * What the names of one state may add up to: it bounds what reading it holds in memory (its
 * manifest, the names seen), far above a real workspace's (50,000 files of 300 bytes).
 */
export const MAX_NAME_BYTES_PER_STATE = 16 * 1024 * 1024;

export class StateRules {
  private readonly seen = new Map<string, WorkspaceEntryType>();
  private nameBytes = 0;

  /** Why the state cannot be kept, judged by its next entry; undefined while it can. */
  broken(entry: ReadEntry): string | undefined {
    const name = entry.path.endsWith('/') ? entry.path.slice(0, -1) : entry.path;
    const shown = JSON.stringify(name.slice(0, 200));
    const type = entryTypeOf(entry);
    if (name.includes('\uFFFD')) return `the state holds a name that is not UTF-8 (${shown})`;
    const rule = pathRuleBroken(name, MAX_STORED_PATH_BYTES);
    if (rule !== undefined) return `the state holds an entry named ${shown}: ${rule}`;
    if (!ROOTS.some((root) => isWithin(name, root))) return `the state holds ${shown}, outside the workspace and the agent's sessions`;
    if (this.seen.has(name)) return `the state holds ${shown} twice`;
    for (const parent of parentsOf(name)) {
      const above = this.seen.get(parent);
      if (above !== undefined && above !== 'directory') return `the state holds ${shown} beneath ${JSON.stringify(parent)}, a ${above}`;
    }
    const target = entry.linkpath ?? '';
    if ((type === 'symlink' || type === 'hardlink') && Buffer.byteLength(target) > MAX_STORED_PATH_BYTES) {
      return `the state holds a link ${shown} whose target is longer than ${MAX_STORED_PATH_BYTES} bytes`;
    }
    // tar makes a hard link to an entry unpacked before it: only a file this state holds already.
    if (type === 'hardlink' && this.seen.get(target) !== 'file')
      return `the state holds a hard link ${shown} to ${JSON.stringify(target.slice(0, 200))}, no file before it`;
    this.nameBytes += Buffer.byteLength(name) + Buffer.byteLength(target);
    if (this.nameBytes > MAX_NAME_BYTES_PER_STATE) return `the state's names take more than ${MAX_NAME_BYTES_PER_STATE} bytes`;
    this.seen.set(name, type);
    return undefined;
  }
}
