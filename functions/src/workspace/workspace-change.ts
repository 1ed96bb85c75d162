import type { Readable } from 'node:stream';
import type { Manifest } from './manifest.js';
import { type ArchiveLimits, ArchiveWriter, readAllEntries } from './state-archive.js';
import { entryNameOf, isWithin, parentsOf, workspacePathOfEntry } from './workspace-path.js';

/** A client's change to a workspace: a file written whole, or a path (a file, or a directory with all under it) removed. */
export type WorkspaceChange = { kind: 'put'; path: string; data: Buffer; at: Date } | { kind: 'delete'; path: string };

/** Why a change cannot be made to the workspace the manifest describes; undefined when it can. */
export function changeConflict(manifest: Manifest, change: WorkspaceChange): { status: 'conflict' | 'not_found'; message: string } | undefined {
  const byPath = new Map(manifest.entries.map((entry) => [entry.path, entry]));
  if (change.kind === 'put') {
    if (byPath.get(change.path)?.type === 'directory') return { status: 'conflict', message: `${change.path} is a directory` };
    for (const parent of parentsOf(change.path)) {
      const type = byPath.get(parent)?.type;
      // A file written under a symlink would land wherever the link points when the state is unpacked.
      if (type !== undefined && type !== 'directory') return { status: 'conflict', message: `${parent} is a ${type}, not a directory` };
    }
  } else if (!manifest.entries.some((entry) => isWithin(entry.path, change.path))) {
    return { status: 'not_found', message: `${change.path} is not in the workspace` };
  }
  // tar unpacks a hard link by linking to an entry before it: one whose target is gone fails the restore of every later turn.
  const removed = (path: string) => isWithin(path, change.path);
  const orphan = manifest.entries.find(
    (entry) => entry.type === 'hardlink' && !removed(entry.path) && entry.target !== undefined && removed(entry.target),
  );
  if (orphan !== undefined) return { status: 'conflict', message: `${orphan.path} is a hard link to ${orphan.target}: delete or replace it first` };
  return undefined;
}

/**
 * The state with the change made, as a new gzipped tar: every other entry (the agent's session
 * among them) is copied as it was, in order; a written file goes last, so it replaces what its
 * path held when the state is unpacked.
 */
export function changedState(state: Readable | undefined, change: WorkspaceChange, limits: ArchiveLimits): Readable {
  const writer = new ArchiveWriter();
  const read =
    state === undefined
      ? Promise.resolve()
      : readAllEntries(state, limits, (entry) => {
          const path = workspacePathOfEntry(entry.path);
          if (path !== undefined && path !== '' && isWithin(path, change.path)) entry.resume();
          else writer.add(entry);
        });
  read.then(
    () => {
      if (change.kind === 'put') writer.addFile(entryNameOf(change.path), change.data, change.at);
      writer.end();
    },
    (error: unknown) => writer.fail(error as Error),
  );
  return writer.output;
}
