import path from 'node:path';
import { prefixRouter, rootRouter, startFront, type FrontServer } from './front.js';
import { InstancePool, type FunctionSettings } from './pool.js';

export { CLAUDERUN_SOURCE, type FunctionSource } from './instance.js';
export type { FunctionSettings } from './pool.js';

/**
 * The platform a function runs on, on loopback: one cloudfunctions.net-style origin serving every
 * function under its name, one run.app-style origin per function serving it at the root, and
 * behind them each function's instances as processes of their own. Names come first, so that
 * a function's environment can hold the URLs (its own, or another function's) before it is
 * deployed, as the deployment predicts them.
 */
export interface Platform {
  /** `http://127.0.0.1:P/NAME`: as https://REGION-PROJECT.cloudfunctions.net/NAME. */
  prefixedUrl(name: string): string;
  /** `http://127.0.0.1:Q`: as https://NAME-PROJECTNUMBER.REGION.run.app. */
  rootUrl(name: string): string;
  /** Starts serving a function named at start; its first instance starts with its first request. */
  deploy(settings: FunctionSettings): InstancePool;
  pool(name: string): InstancePool;
  close(): Promise<void>;
}

export async function startPlatform(options: {
  names: string[];
  dataDir: string;
  log: (message: string) => void;
  /** The cloudfunctions.net-style origin's port (0: any free one). */
  port?: number;
}): Promise<Platform> {
  const pools = new Map<string, InstancePool>();
  const fronts: FrontServer[] = [];
  const roots = new Map<string, FrontServer>();
  try {
    const prefixed = await startFront(
      prefixRouter(() => pools),
      options.log,
      options.port ?? 0,
    );
    fronts.push(prefixed);
    for (const name of options.names) {
      if (!/^[a-z][a-z0-9-]{0,62}$/.test(name)) throw new Error(`a function's name is lower-case letters, digits and hyphens: ${name}`);
      const root = await startFront(
        rootRouter(() => pools.get(name)),
        options.log,
      );
      fronts.push(root);
      roots.set(name, root);
    }
    const known = (name: string) => {
      const root = roots.get(name);
      if (root === undefined) throw new Error(`no function ${name} on this platform (named: ${options.names.join(', ')})`);
      return root;
    };
    return {
      prefixedUrl: (name) => {
        known(name);
        return `${prefixed.url}/${name}`;
      },
      rootUrl: (name) => known(name).url,
      deploy: (settings) => {
        known(settings.name);
        if (pools.has(settings.name)) throw new Error(`${settings.name} is deployed already`);
        const pool = new InstancePool(settings, path.join(options.dataDir, settings.name), options.log);
        pools.set(settings.name, pool);
        return pool;
      },
      pool: (name) => {
        const pool = pools.get(name);
        if (pool === undefined) throw new Error(`${name} is not deployed`);
        return pool;
      },
      close: async () => {
        for (const front of fronts) await front.close();
        await Promise.all([...pools.values()].map((pool) => pool.close()));
      },
    };
  } catch (error) {
    for (const front of fronts) await front.close();
    throw error;
  }
}
