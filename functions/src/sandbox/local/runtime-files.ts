import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { projectRoot } from '../../project-root.js';
import { SandboxUnavailableError } from '../launcher.js';

/** The host files a local sandbox runs. */
export interface RuntimeFiles {
  node: string;
  claude: string;
  runner: string;
  shellPrefix: string;
}

/** The host files a local sandbox runs: Node, the pinned Claude Code binary, the runner bundle. */
export function locateRuntimeFiles(root: string = projectRoot()): RuntimeFiles {
  const require = createRequire(path.join(root, 'package.json'));
  let claude: string;
  try {
    claude = path.join(path.dirname(require.resolve('@anthropic-ai/claude-code/package.json')), 'bin', 'claude.exe');
  } catch {
    throw new SandboxUnavailableError('the Claude Code CLI (@anthropic-ai/claude-code) is not installed: run npm ci');
  }
  const files: RuntimeFiles = {
    node: process.execPath,
    claude,
    runner: path.join(root, 'dist', 'runner', 'runner.mjs'),
    shellPrefix: path.join(root, 'sandbox-image', 'runner', 'oom-first.sh'),
  };
  for (const [what, file] of Object.entries(files)) {
    if (!existsSync(file)) throw new SandboxUnavailableError(`sandbox ${what} not found at ${file} (run npm run build)`);
  }
  return files;
}
