// Builds the web page into dist/functions/web: the browser script bundled into one file, the HTML
// and the stylesheet copied. dist/functions is what the function's source upload is made of, so a
// deployment serves the page as `npm start` does.
import { copyFile, mkdir } from 'node:fs/promises';
import { build } from 'esbuild';

const source = 'functions/src/web';
const out = 'dist/functions/web';

await mkdir(out, { recursive: true });
await build({
  entryPoints: [`${source}/page/main.ts`],
  outfile: `${out}/app.js`,
  bundle: true,
  platform: 'browser',
  format: 'esm',
  target: ['es2022'],
  minify: true,
  legalComments: 'none',
  logLevel: 'warning',
});
await Promise.all(['index.html', 'styles.css'].map((file) => copyFile(`${source}/${file}`, `${out}/${file}`)));
