import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { createClauderun } from '../../functions/src/app.js';
import { loadConfig } from '../../functions/src/config.js';
import { frameworkServer } from '../../functions/src/http/framework-server.js';
import { startCloudFakes } from './cloud-fakes.js';

/**
 * `npm run sim`: the production path on one machine. The API runs with the Firestore store, the
 * Cloud Storage blob store and the Cloud Run launcher, against the official Firestore emulator
 * (or FIRESTORE_EMULATOR_HOST), a fake Cloud Storage and a fake Cloud Run Admin API that runs each
 * execution in the local sandbox. It serves on PORT (8080) exactly the calls `npm start` does;
 * ANTHROPIC_API_KEY / ANTHROPIC_BASE_URL are honoured as there.
 */
const log = (message: string) => console.error(`clauderun-sim: ${message}`);
const port = Number(process.env.PORT ?? 8080);
const dataDir = path.resolve(process.env.CLAUDERUN_DATA_DIR ?? '.clauderun-sim');
mkdirSync(dataDir, { recursive: true });

const fakes = await startCloudFakes({ dataDir, log });
try {
  const config = loadConfig({ ...process.env, CLAUDERUN_DATA_DIR: dataDir, ...fakes.apiEnv(port) });
  const clauderun = await createClauderun(config, { log });
  const server = frameworkServer('clauderun', clauderun.app, log, clauderun.maxBodyBytes);
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  log(`Firestore emulator ${fakes.firestore.host}, fake Cloud Storage ${fakes.storage.url}, fake Cloud Run http://${fakes.cloudRun.host}:${fakes.cloudRun.port}`);
  log(`listening on http://127.0.0.1:${port}`);
  const stop = (signal: string) => {
    log(`${signal}: stopping`);
    server.closeAllConnections();
    server.close();
    clauderun
      .close()
      .then(() => fakes.close())
      .then(
        () => process.exit(0),
        (error: unknown) => {
          log(`stopping failed: ${(error as Error).stack ?? String(error)}`);
          process.exit(1);
        },
      );
  };
  process.once('SIGINT', stop).once('SIGTERM', stop);
} catch (error) {
  await fakes.close();
  throw error;
}
