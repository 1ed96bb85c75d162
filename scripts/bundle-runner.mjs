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
  // ws is CommonJS and requires Node's modules: an ES module bundle has no require of its own.
  banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
  logLevel: 'warning',
});
