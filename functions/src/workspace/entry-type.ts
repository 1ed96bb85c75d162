import type { ReadEntry } from 'tar';
import type { WorkspaceEntryType } from '../contract/api.js';

/** tar's entry types as the workspace lists them; any other is 'other'. */
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
