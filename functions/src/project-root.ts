import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The project root: the nearest directory above this module with clauderun's package.json. Run
 * from the sources or from dist/, the files the service serves or runs (the web page's build, the
 * runner bundle, the seccomp compiler) are found from there.
 */
export function projectRoot(from: string = path.dirname(fileURLToPath(import.meta.url))): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const manifest = path.join(dir, 'package.json');
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === 'clauderun') return dir;
    if (path.dirname(dir) === dir) throw new Error('cannot find the clauderun project root');
  }
}
