import { build } from 'esbuild';
import { describe, expect, test } from 'vitest';

/**
 * The runner and the web page take values from the contract, but only from its modules that
 * import nothing: zod would cost every sandbox its start-up time, and every visitor its download.
 * What the bundlers (scripts/bundle-runner.mjs, scripts/bundle-web.mjs) would pull in, read from
 * the same entry points.
 */
async function inputsOf(entryPoint: string, platform: 'node' | 'browser'): Promise<string[]> {
  const result = await build({ entryPoints: [entryPoint], bundle: true, platform, format: 'esm', write: false, metafile: true, logLevel: 'silent' });
  return Object.keys(result.metafile.inputs);
}

describe('what the sandbox and the browser get of the contract', () => {
  test.each([
    ['the runner', 'sandbox-image/runner/main.ts', 'node'],
    ['the web page', 'functions/src/web/page/main.ts', 'browser'],
  ] as const)('%s bundles no zod and no schema module', async (_what, entryPoint, platform) => {
    const inputs = await inputsOf(entryPoint, platform);
    expect(inputs.some((input) => input.startsWith('functions/src/contract/'))).toBe(true);
    expect(inputs.filter((input) => input.includes('node_modules/zod/'))).toEqual([]);
    // The schemas' modules import zod; their types are all these two may take from them.
    expect(inputs.filter((input) => /contract\/(api|runner|turn)\.ts$/.test(input))).toEqual([]);
  });
});
