import { createClauderun } from './app.js';
import { ConfigError, loadConfig } from './config.js';
import { frameworkServer } from './http/framework-server.js';
import { SandboxUnavailableError } from './sandbox/launcher.js';

/** `npm start`: the `clauderun` function on the Functions Framework, configured from the environment. */
const log = (message: string) => console.error(`clauderun: ${message}`);
try {
  const config = loadConfig(process.env);
  const clauderun = await createClauderun(config, { log });
  const server = frameworkServer('clauderun', clauderun.app, log, clauderun.bodyLimits);
  server.listen(config.port, '127.0.0.1', () => log(`listening on http://127.0.0.1:${config.port}`));
  const stop = (signal: string) => {
    log(`${signal}: stopping`);
    server.close();
    void clauderun.close().then(() => process.exit(0));
  };
  process.once('SIGINT', stop).once('SIGTERM', stop);
} catch (error) {
  if (error instanceof ConfigError || error instanceof SandboxUnavailableError) {
    log(error.message);
    process.exit(1);
  }
  throw error;
}
