import type { Readable } from 'node:stream';
import type { ReadEntry } from 'tar';
import { z } from 'zod';
import { WorkspaceFile, type WorkspaceEntryType } from '../contract/api.js';
import { type ArchiveLimits, readAllEntries, StateArchiveError } from './state-archive.js';
import { workspacePathOfEntry } from './workspace-path.js';

/**
 * What a state's workspace holds (paths, types, sizes, times), computed once when the state is
 * stored and kept beside it, so that listing files never reads the archive. Directories are kept
 * too: a change checks its path against them.
 */
export const Manifest = z.object({ version: z.literal(1), entries: z.array(WorkspaceFile) });
export type Manifest = z.infer<typeof Manifest>;

export const EMPTY_MANIFEST: Manifest = { version: 1, entries: [] };

const TYPE_OF: Partial<Record<ReadEntry['type'], WorkspaceEntryType>> = {
  File: 'file',
  OldFile: 'file',
  ContiguousFile: 'file',
  Directory: 'directory',
  GNUDumpDir: 'directory',
  SymbolicLink: 'symlink',
  Link: 'hardlink',
};

export const entryTypeOf = (entry: ReadEntry): WorkspaceEntryType => TYPE_OF[entry.type] ?? 'other';

const isoOrNull = (date: Date | undefined): string | null => (date !== undefined && Number.isFinite(date.getTime()) ? date.toISOString() : null);

/** An archive entry as the workspace lists it, or undefined when it is not in the workspace. */
export function workspaceFileOf(entry: ReadEntry): WorkspaceFile | undefined {
  const path = workspacePathOfEntry(entry.path);
  if (path === undefined || path === '') return undefined;
  const type = entryTypeOf(entry);
  const target = type === 'symlink' || type === 'hardlink' ? (workspacePathOfEntry(entry.linkpath ?? '') ?? entry.linkpath) : undefined;
  return {
    path,
    type,
    size: type === 'file' ? entry.size : 0,
    modifiedAt: isoOrNull(entry.mtime),
    ...(target === undefined ? {} : { target }),
  };
}

/**
 * A name tar would write outside the sandbox's root or that no runner writes: the runner's GNU
 * tar stores names relative to "/", and a state holding another came from a tampered sandbox.
 */
function unsafeName(name: string): boolean {
  return name.startsWith('/') || name.split('/').includes('..');
}

/** Reads a whole state archive into its manifest, within the sandbox's limits. */
export async function manifestOf(archive: Readable, limits: ArchiveLimits): Promise<Manifest> {
  const entries: WorkspaceFile[] = [];
  let unsafe: string | undefined;
  await readAllEntries(archive, limits, (entry) => {
    if (unsafeName(entry.path)) unsafe ??= entry.path;
    const file = workspaceFileOf(entry);
    if (file !== undefined) entries.push(file);
    entry.resume();
  });
  if (unsafe !== undefined)
    throw new StateArchiveError(`the state holds an entry named ${JSON.stringify(unsafe.slice(0, 200))}, outside its root`, 'unreadable');
  return { version: 1, entries };
}
