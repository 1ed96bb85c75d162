import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: the nearest directory above this module with clauderun's package.json. */
export function repoRoot(from: string = path.dirname(fileURLToPath(import.meta.url))): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const manifest = path.join(dir, 'package.json');
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === 'clauderun') return dir;
    if (path.dirname(dir) === dir) throw new Error(`cannot find the clauderun repository root above ${from}`);
  }
}

export interface RootPackage {
  name: string;
  version: string;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

/** The root package.json, read when the program runs (so pinned versions have one home). */
export function readRootPackage(root: string = repoRoot()): RootPackage {
  return JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as RootPackage;
}

/** `file` relative to the working directory (infra/ under Pulumi): state that does not name the machine. */
export function fromCwd(file: string): string {
  return path.relative(process.cwd(), file) || '.';
}
