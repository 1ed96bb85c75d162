import type { Readable } from 'node:stream';
import type { ReadEntry } from 'tar';
import { z } from 'zod';
import { WorkspaceFile } from '../contract/api.js';
import { entryTypeOf } from './entry-type.js';
import { type ArchiveLimits, readAllEntries, StateArchiveError } from './state-archive.js';
import { StateRules } from './state-rules.js';
import { workspacePathOfEntry } from './workspace-path.js';

/**
 * What a state's workspace holds (paths, types, sizes, times), computed once when the state is
 * stored and kept beside it, so that listing files never reads the archive. Directories are kept
 * too: a change checks its path against them.
 */
export const Manifest = z.object({ version: z.literal(1), entries: z.array(WorkspaceFile) });
export type Manifest = z.infer<typeof Manifest>;

export const EMPTY_MANIFEST: Manifest = { version: 1, entries: [] };

const isoOrNull = (date: Date | undefined): string | null => (date !== undefined && Number.isFinite(date.getTime()) ? date.toISOString() : null);

/** An archive entry as the workspace lists it, or undefined when it is not in the workspace. */
export function workspaceFileOf(entry: ReadEntry): WorkspaceFile | undefined {
  const path = workspacePathOfEntry(entry.path);
  if (path === undefined || path === '') return undefined;
  const type = entryTypeOf(entry);
  // A hard link names its target as the archive does; a symlink's is the link's own text.
  const target =
    type === 'hardlink' ? (workspacePathOfEntry(entry.linkpath ?? '') ?? entry.linkpath) : type === 'symlink' ? entry.linkpath : undefined;
  return {
    path,
    type,
    size: type === 'file' ? entry.size : 0,
    modifiedAt: isoOrNull(entry.mtime),
    ...(target === undefined ? {} : { target }),
  };
}

/**
 * A manifest made entry by entry as a state is read: each entry is held to the rules of what a
 * state holds (a broken one throws, ending the read), then listed if it is in the workspace.
 */
export function manifestMaker(): { take(entry: ReadEntry): void; manifest(): Manifest } {
  const entries: WorkspaceFile[] = [];
  const rules = new StateRules();
  return {
    take(entry) {
      const broken = rules.broken(entry);
      if (broken !== undefined) throw new StateArchiveError(broken, 'unreadable');
      const file = workspaceFileOf(entry);
      if (file !== undefined) entries.push(file);
    },
    manifest: () => ({ version: 1, entries }),
  };
}

/** Reads a whole state archive into its manifest, within the sandbox's limits and the rules of what a state holds. */
export async function manifestOf(archive: Readable, limits: ArchiveLimits): Promise<Manifest> {
  const maker = manifestMaker();
  await readAllEntries(archive, limits, (entry) => {
    entry.resume();
    maker.take(entry);
  });
  return maker.manifest();
}
