import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../functions/src/project-root.js';

/*
 * The layers of functions/src (README, Architecture), kept by a test rather than by goodwill:
 * each folder may import only what its row names, so that the domain stays below the use cases
 * and the stores, and only the composition root picks adapters. The entry points and the
 * composition root at the top of functions/src may import anything.
 */

const SOURCE = path.join(projectRoot(), 'functions', 'src');

/** What a module of a layer may import: folders (every module in them) or single modules. */
const MAY_IMPORT: Record<string, readonly string[]> = {
  contract: ['contract/'],
  domain: ['domain/', 'contract/'],
  store: ['store/', 'domain/', 'contract/', 'data-dir.ts'],
  blobs: ['blobs/', 'contract/', 'byte-limit.ts'],
  sandbox: ['sandbox/', 'domain/', 'contract/', 'project-root.ts'],
  model: ['model/', 'domain/', 'contract/'],
  // The policy that judges a sandbox's connections out, and the tunnel that carries them.
  egress: ['egress/', 'domain/', 'contract/'],
  // The API-key authenticator reads keys through the store's port, never an adapter.
  auth: ['auth/', 'contract/', 'store/api-key-store.ts'],
  // A conversation's state archive and what is derived from it, kept in the blob store's port.
  workspace: ['workspace/', 'contract/', 'blobs/blob-store.ts', 'byte-limit.ts'],
  // The use cases reach storage, sandboxes and the model through their ports alone.
  conversations: [
    'conversations/',
    'workspace/',
    'domain/',
    'contract/',
    'config.ts',
    'store/conversation-store.ts',
    'blobs/blob-store.ts',
    'sandbox/launcher.ts',
    'model/upstream.ts',
  ],
  http: ['http/', 'conversations/', 'domain/', 'contract/', 'auth/', 'model/', 'egress/', 'config.ts', 'project-root.ts'],
  // The browser's page: the contract's zod-free modules (a bundle test keeps zod out).
  web: ['web/', 'contract/'],
};

/** Every relative import of a module (static, type-only and dynamic), as paths under functions/src. */
function importsOf(file: string): string[] {
  const text = readFileSync(path.join(SOURCE, file), 'utf8');
  const specifiers = [...text.matchAll(/(?:\bfrom\s+|\bimport\s*\(\s*|^import\s+)'(\.[^']+)'/gm)].map((match) => match[1]!);
  return specifiers.map((specifier) => path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier)).replace(/\.js$/, '.ts'));
}

function sourceFiles(dir = ''): string[] {
  return readdirSync(path.join(SOURCE, dir), { withFileTypes: true }).flatMap((entry) => {
    const relative = dir === '' ? entry.name : `${dir}/${entry.name}`;
    if (entry.isDirectory()) return sourceFiles(relative);
    return entry.name.endsWith('.ts') ? [relative] : [];
  });
}

const allowed = (target: string, rules: readonly string[]): boolean =>
  rules.some((rule) => (rule.endsWith('/') ? target.startsWith(rule) : target === rule));

describe('the layers of functions/src', () => {
  const files = sourceFiles();

  it('finds the modules and their imports', () => {
    // A parser that found nothing would make every rule below pass.
    expect(files.length).toBeGreaterThan(80);
    expect(importsOf('conversations/service.ts').length).toBeGreaterThan(3);
    expect(importsOf('adapters.ts')).toContain('store/firestore.ts');
  });

  for (const [layer, rules] of Object.entries(MAY_IMPORT)) {
    it(`${layer}/ imports only ${rules.join(', ')}`, () => {
      const modules = files.filter((file) => file.startsWith(`${layer}/`));
      expect(modules.length).toBeGreaterThan(0);
      const breaches = modules.flatMap((file) =>
        importsOf(file)
          .filter((target) => !allowed(target, rules))
          .map((target) => `${file} -> ${target}`),
      );
      expect(breaches).toEqual([]);
    });
  }

  it('has a rule for every folder', () => {
    const folders = new Set(files.filter((file) => file.includes('/')).map((file) => file.split('/')[0]!));
    expect([...folders].filter((folder) => MAY_IMPORT[folder] === undefined)).toEqual([]);
  });

  it('leaves picking adapters to adapters.ts: no other module imports one', () => {
    const adapterModules = (target: string) =>
      /^(store\/(sqlite|firestore|api-keys-[a-z]+)\.ts|blobs\/(fs|gcs)\.ts|sandbox\/(local|cloudrun)\/index\.ts|model\/(anthropic|demo)\.ts)$/.test(
        target,
      );
    const pickers = files.filter((file) => importsOf(file).some(adapterModules));
    expect(pickers).toEqual(['adapters.ts']);
  });
});
