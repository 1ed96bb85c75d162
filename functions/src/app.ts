import { randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import express, { type Express, type Router } from 'express';
import { modelUpstream, openApiKeyStore, openBlobStore, openConversationStore, openSandboxLauncher } from './adapters.js';
import type { Authenticator } from './auth/authenticator.js';
import { CombinedAuthenticator, type AuthMode } from './auth/combined.js';
import { HeaderAuthenticator } from './auth/header.js';
import type { Config } from './config.js';
import { ensurePrivateDir } from './data-dir.js';
import { RunnerService } from './conversations/runner-service.js';
import { ConversationService } from './conversations/service.js';
import { WorkspaceService } from './conversations/workspace-service.js';
import { StateBlobs } from './workspace/state-blobs.js';
import { TurnLifecycle } from './conversations/turn-lifecycle.js';
import { PoolTokens, TurnTokens } from './conversations/turn-token.js';
import { WarmPool } from './conversations/warm-pool.js';
import { answerClientErrorsAsJson, errorHandler, originFormOnly, sendError } from './http/errors.js';
import { egressUpgrade } from './http/egress-upgrade.js';
import { internalRoutes } from './http/internal-routes.js';
import { MAX_MODEL_REQUEST_BYTES, modelProxyRoutes } from './http/model-proxy.js';
import { PolicyChecker } from './model/policy-checker.js';
import { opsRoutes } from './http/ops-routes.js';
import { publicRoutes } from './http/public-routes.js';
import { webRoutes } from './http/web-routes.js';
import type { EgressPolicy } from './egress/egress-policy.js';
import { createEgressPolicy } from './egress/policy.js';
import { EgressTunnels } from './egress/tunnel.js';
import type { EgressCaps } from './domain/egress-budget.js';
import type { SandboxLauncher } from './sandbox/launcher.js';
import { serveWith } from './sandbox/local/api-bridge.js';
import type { ApiKeyStore } from './store/api-key-store.js';
import type { BodyLimits } from './http/body.js';

export interface Clauderun {
  /**
   * The HTTP handler the Functions Framework serves: the public API and the page, the runner's
   * routes, or both (CLAUDERUN_SERVE). In the cloud the runner's are a function of their own,
   * reached only from the sandboxes' network; locally sandboxes reach them through their bridge.
   */
  app: Express;
  /** The runner's routes and the model proxy alone: all a local sandbox's bridge leads to. */
  internalApp: Express;
  /** The largest request bodies `app` reads: what its routes can take, so that nothing larger is buffered. */
  bodyLimits: BodyLimits;
  service: ConversationService;
  close(): Promise<void>;
}

export interface Overrides {
  /** Replaces the configured launcher (tests of the service logic alone). */
  launcher?: SandboxLauncher;
  /** Replaces the configured egress policy (CLAUDERUN_EGRESS_ALLOW; tests of the tunnel alone). */
  egressPolicy?: EgressPolicy;
  log?: (message: string) => void;
}

/**
 * Workspace files one instance receives at once: each is read whole (up to CLAUDERUN_MAX_FILE_BYTES)
 * before anyone is authenticated, so this bounds what uploads can make the public function hold.
 */
const FILE_UPLOADS_IN_FLIGHT = 4;

/** The composition root: wires the adapters adapters.ts picks into the service and its routes. */
export async function createClauderun(config: Config, overrides: Overrides = {}): Promise<Clauderun> {
  const log = overrides.log ?? ((message: string) => console.error(`clauderun: ${message}`));
  ensurePrivateDir(config.dataDir);
  const store = await openConversationStore(config);
  const blobs = await openBlobStore(config);
  const upstream = modelUpstream(config);
  // Local sandboxes reach this listener, never the public port; it serves once the routes exist.
  const runnerListener = answerClientErrorsAsJson(http.createServer());
  const launcher = overrides.launcher ?? (await openSandboxLauncher(config, serveWith(runnerListener), log));
  const states = new StateBlobs(blobs, {
    maxStateBytes: config.limits.maxStateBytes,
    // What a state may expand to is what a sandbox can hold: its disk and its file count.
    archive: { maxExpandedBytes: config.limits.diskMb * 1024 * 1024, maxEntries: config.limits.files },
  });
  const tokenSecret = config.tokenSecret ?? persistentSecret(config.dataDir);
  const warm = new WarmPool({
    store,
    launcher,
    tokens: new PoolTokens(tokenSecret),
    settings: config.warm,
    turnTimeoutSeconds: config.limits.turnTimeoutSeconds,
    runningSandboxes: config.quota.runningSandboxes,
    // The start limit stands for Cloud Run's runJob quota; locally there is none by default, and
    // a warm turn's refill, made as the turn ends, could not use the start its admission counted.
    startsPerMinute: launcher.sandboxesOutliveProcess ? config.quota.sandboxStartsPerMinute : Number.POSITIVE_INFINITY,
    log,
  });
  const lifecycle = new TurnLifecycle({
    store,
    states,
    launcher,
    tokens: new TurnTokens(tokenSecret),
    warm,
    limits: { ...config.limits },
    quota: config.quota,
    agent: config.agent,
    log,
  });
  const auth = await authenticators(config, log);
  const service = new ConversationService(lifecycle);
  const runner = new RunnerService(lifecycle);
  const recovered = await lifecycle.recoverUnfinished();
  if (recovered.settled > 0) log(`settled ${recovered.settled} turn(s) interrupted by a previous stop`);
  await warm.recover();
  // In the cloud the pool is filled by requests (claims, the sweeper): between them an instance may have no CPU.
  if (!launcher.sandboxesOutliveProcess) void warm.fill();
  // A cloud function of the public routes alone holds no model key: its sandboxes' model calls go to the runner's.
  const servesModelCalls = config.sandbox.kind === 'local' || config.serve !== 'public';
  if (upstream.name === 'demo' && servesModelCalls) log('no ANTHROPIC_API_KEY: answering with the built-in demo model');

  const publicRouters = [
    publicRoutes(service, new WorkspaceService(lifecycle), auth.authenticator, {
      openRequestsPerUser: config.limits.openRequestsPerUser,
      maxFileBytes: config.limits.maxFileBytes,
    }),
    webRoutes(config),
  ];
  if (config.sweeper !== undefined) {
    const { GoogleIdTokenVerifier } = await import('./auth/google-id-token.js');
    publicRouters.push(opsRoutes(lifecycle, new GoogleIdTokenVerifier(config.sweeper)));
  }
  const policy = {
    models: config.agent.models,
    maxOutputTokens: config.agent.maxOutputTokens,
    maxCallsInFlight: config.agent.maxModelCallsInFlight,
    requestBytesPerMinute: config.agent.modelRequestBytesPerMinute,
  };
  const checker = new PolicyChecker(policy);
  const egressCaps: EgressCaps = {
    maxConnectionsPerTurn: config.egress.maxConnectionsPerTurn,
    maxBytesPerTurn: config.egress.maxBytesPerTurn,
    dailyBytesPerUser: config.quota.dailyEgressBytes,
  };
  const tunnels = new EgressTunnels({
    policy: overrides.egressPolicy ?? createEgressPolicy(config.egress),
    meter: { open: (turn) => runner.openEgress(turn, egressCaps), record: (turn, attempt) => runner.recordEgress(turn, attempt) },
    log,
  });
  const egress = egressUpgrade(runner, tunnels, log);
  const runnerRouters = [internalRoutes(runner), egress.router, modelProxyRoutes(runner, upstream, policy, checker, log)];
  const internalApp = jsonApp(runnerRouters, log);
  runnerListener.on('request', internalApp);
  runnerListener.on('upgrade', egress.upgrade);

  // A prompt's JSON may escape every byte of it (\uXXXX); a client puts a file whole; the runner's
  // largest bodies are model calls and states.
  const publicBodyBytes = 6 * config.limits.maxPromptBytes + 64 * 1024;
  const files = { maxBytes: config.limits.maxFileBytes + 64 * 1024, inFlight: FILE_UPLOADS_IN_FLIGHT };
  const runnerBodyBytes = Math.max(MAX_MODEL_REQUEST_BYTES, config.limits.maxStateBytes) + 64 * 1024;
  const served = {
    public: { routers: publicRouters, bodyLimits: { maxBytes: publicBodyBytes, files } },
    runner: { routers: runnerRouters, bodyLimits: { maxBytes: runnerBodyBytes } },
    all: { routers: [...publicRouters, ...runnerRouters], bodyLimits: { maxBytes: Math.max(publicBodyBytes, runnerBodyBytes), files } },
  }[config.serve];
  return {
    app: jsonApp(served.routers, log),
    internalApp,
    bodyLimits: served.bodyLimits,
    service,
    close: async () => {
      tunnels.closeAll();
      await lifecycle.close();
      runnerListener.closeAllConnections();
      await checker.close();
      await auth.close();
      await store.close();
    },
  };
}

/** Routes (and /healthz), then a JSON 404 for anything else and JSON for every error. */
function jsonApp(routers: Router[], log: (message: string) => void): Express {
  const app = express();
  app.disable('x-powered-by');
  app.use(originFormOnly);
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  for (const router of routers) app.use(router);
  app.use((req, res) => sendError(res, 'not_found', `no route for ${req.method} ${req.path}`));
  app.use(errorHandler(log));
  return app;
}

/** The configured auth modes, combined; each mode's code is loaded only when it is configured. */
async function authenticators(config: Config, log: (message: string) => void): Promise<{ authenticator: Authenticator; close(): Promise<void> }> {
  const modes: Partial<Record<AuthMode, Authenticator>> = {};
  let keys: ApiKeyStore | undefined;
  if (config.auth.modes.includes('header')) modes.header = new HeaderAuthenticator();
  if (config.auth.modes.includes('apikey')) {
    const { ApiKeyAuthenticator } = await import('./auth/apikey.js');
    keys = await openApiKeyStore(config);
    modes.apikey = new ApiKeyAuthenticator(keys);
  }
  if (config.auth.firebase !== undefined) {
    const { FirebaseAuthenticator } = await import('./auth/firebase.js');
    modes.firebase = new FirebaseAuthenticator({ ...config.auth.firebase, log });
  }
  return { authenticator: new CombinedAuthenticator(modes), close: async () => keys?.close() };
}

/** Locally, the token-signing key is made once and kept (owner-only) in the data dir. */
function persistentSecret(dataDir: string): string {
  const file = path.join(dataDir, 'token-secret');
  try {
    const secret = readFileSync(file, 'utf8').trim();
    chmodSync(file, 0o600);
    return secret;
  } catch {
    ensurePrivateDir(dataDir);
    const secret = randomBytes(32).toString('base64url');
    writeFileSync(file, secret, { mode: 0o600, flag: 'wx' });
    return secret;
  }
}
