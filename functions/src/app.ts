import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import express, { type Express } from 'express';
import { HeaderAuthenticator } from './auth/header.js';
import { FsBlobStore } from './blobs/fs.js';
import { ConfigError, type Config } from './config.js';
import { ConversationService } from './conversations/service.js';
import { TurnTokens } from './conversations/turn-token.js';
import { errorHandler, sendError } from './http/errors.js';
import { internalRoutes } from './http/internal-routes.js';
import { modelProxyRoutes } from './http/model-proxy.js';
import { publicRoutes } from './http/public-routes.js';
import { AnthropicUpstream } from './model/anthropic.js';
import { DemoUpstream } from './model/demo.js';
import type { ModelUpstream } from './model/upstream.js';
import type { SandboxLauncher } from './sandbox/launcher.js';
import { createLocalLauncher } from './sandbox/local/index.js';
import { SqliteConversationStore } from './store/sqlite.js';

export interface Clauderun {
  /** The HTTP handler: what the Functions Framework serves. */
  app: Express;
  service: ConversationService;
  upstream: ModelUpstream;
  close(): Promise<void>;
}

export interface Overrides {
  /** Replaces the configured launcher (tests of the service logic alone). */
  launcher?: SandboxLauncher;
  log?: (message: string) => void;
}

/** The composition root: the only place that knows which adapter serves which port. */
export async function createClauderun(config: Config, overrides: Overrides = {}): Promise<Clauderun> {
  const log = overrides.log ?? ((message: string) => console.error(`clauderun: ${message}`));
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  if (config.store.kind !== 'sqlite' || config.blobs.kind !== 'fs') {
    throw new ConfigError('CLAUDERUN_STORE=firestore and CLAUDERUN_BLOBS=gcs are not wired into this build yet');
  }
  const store = new SqliteConversationStore(path.join(config.dataDir, 'clauderun.db'));
  const blobs = new FsBlobStore(path.join(config.dataDir, 'blobs'));
  const upstream: ModelUpstream =
    config.model.upstream === 'anthropic' ? new AnthropicUpstream(config.model.baseUrl, config.model.apiKey) : new DemoUpstream();
  const launcher = overrides.launcher ?? (await sandboxLauncher(config, log));
  const service = new ConversationService({
    store,
    blobs,
    launcher,
    tokens: new TurnTokens(config.tokenSecret ?? persistentSecret(config.dataDir)),
    limits: { ...config.limits },
    agentModel: config.agentModel,
    log,
  });
  const settled = await service.settleInterrupted();
  if (settled > 0) log(`settled ${settled} turn(s) interrupted by a previous stop`);
  if (upstream.name === 'demo') log('no ANTHROPIC_API_KEY: answering with the built-in demo model');

  const app = express();
  app.disable('x-powered-by');
  app.use(publicRoutes(service, new HeaderAuthenticator()));
  app.use(internalRoutes(service));
  app.use(modelProxyRoutes(service, upstream, log));
  app.use((req, res) => sendError(res, 'not_found', `no route for ${req.method} ${req.path}`));
  app.use(errorHandler(log));

  return {
    app,
    service,
    upstream,
    close: async () => {
      await service.close();
      await store.close();
    },
  };
}

async function sandboxLauncher(config: Config, log: (message: string) => void): Promise<SandboxLauncher> {
  const sandbox = config.sandbox;
  if (sandbox.kind === 'cloudrun') {
    // Loaded only when used: the Google client libraries cost ~40 MB of memory on their own.
    const { createCloudRunLauncher } = await import('./sandbox/cloudrun/index.js');
    return createCloudRunLauncher({ jobName: sandbox.jobName, apiUrl: config.apiUrl, endpoint: sandbox.endpoint, log });
  }
  return createLocalLauncher({
    dataDir: config.dataDir,
    apiPort: config.port,
    limits: { memoryBytes: config.limits.memoryMb * 1024 * 1024, cpus: config.limits.cpus, pids: config.limits.pids },
    systemPath: config.systemPath,
    log,
  });
}

/** Locally, the token-signing key is made once and kept (owner-only) in the data dir. */
function persistentSecret(dataDir: string): string {
  const file = path.join(dataDir, 'token-secret');
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    mkdirSync(dataDir, { recursive: true });
    const secret = randomBytes(32).toString('base64url');
    writeFileSync(file, secret, { mode: 0o600, flag: 'wx' });
    return secret;
  }
}
