// Bundles the in-sandbox runner into one file: a sandbox gets that file and nothing else of ours.
import { build } from 'esbuild';

await build({
  entryPoints: ['sandbox-image/runner/main.ts'],
  outfile: 'dist/runner/runner.mjs',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node22',
  minify: true,
  legalComments: 'none',
  logLevel: 'warning',
});
