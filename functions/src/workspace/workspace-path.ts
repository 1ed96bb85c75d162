import path from 'node:path';
import { SANDBOX_LAYOUT } from '../contract/sandbox-layout.js';

/** Longest path a client may name, in UTF-8 bytes: well under what a state can restore (PATH_MAX). */
export const MAX_PATH_BYTES = 1024;
/** Longest name a state may hold, in UTF-8 bytes: what Linux can resolve (PATH_MAX, 4096 with its NUL). */
export const MAX_STORED_PATH_BYTES = 4095;
/** Longest name of one file or directory on Linux (NAME_MAX). */
const MAX_NAME_BYTES = 255;

/** Where the workspace's entries sit in a state archive, which holds paths relative to "/". */
export const WORKSPACE_PREFIX = `${path.relative('/', SANDBOX_LAYOUT.workspace)}/`;

/** A rule a path broke, in words a client can act on; undefined when the path is a clean relative one. */
export function pathRuleBroken(candidate: string, maxBytes = MAX_PATH_BYTES): string | undefined {
  if (candidate === '') return 'the path is empty';
  if (candidate.includes('\0')) return 'the path holds a NUL character';
  if (candidate.startsWith('/')) return 'the path must be relative to the workspace, not absolute';
  const names = candidate.split('/');
  if (names.includes('..')) return "the path must not hold a '..' segment";
  if (names.some((name) => name === '' || name === '.')) return "the path must not hold an empty or '.' segment (no '//', './' or trailing '/')";
  if (Buffer.byteLength(candidate) > maxBytes) return `the path is longer than ${maxBytes} bytes`;
  if (names.some((name) => Buffer.byteLength(name) > MAX_NAME_BYTES)) return `a name in the path is longer than ${MAX_NAME_BYTES} bytes`;
  return undefined;
}

/**
 * The workspace path of an archive entry ('' for the workspace itself), or undefined when the
 * entry is not in the workspace or its name is not clean (such an entry is never served).
 */
export function workspacePathOfEntry(entryName: string): string | undefined {
  const name = entryName.endsWith('/') ? entryName.slice(0, -1) : entryName;
  if (`${name}/` === WORKSPACE_PREFIX) return '';
  if (!name.startsWith(WORKSPACE_PREFIX)) return undefined;
  const relative = name.slice(WORKSPACE_PREFIX.length);
  return pathRuleBroken(relative, MAX_STORED_PATH_BYTES) === undefined ? relative : undefined;
}

/** The archive entry name of a workspace path. */
export const entryNameOf = (workspacePath: string): string => `${WORKSPACE_PREFIX}${workspacePath}`;

/** The directories above a workspace path, nearest last: 'a/b/c' → ['a', 'a/b']. */
export function parentsOf(workspacePath: string): string[] {
  const names = workspacePath.split('/');
  return names.slice(0, -1).map((_, i) => names.slice(0, i + 1).join('/'));
}

/** Whether `candidate` is `root` or lies under it. */
export const isWithin = (candidate: string, root: string): boolean => candidate === root || candidate.startsWith(`${root}/`);
