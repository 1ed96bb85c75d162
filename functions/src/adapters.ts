import path from 'node:path';
import type { BlobStore } from './blobs/blob-store.js';
import { FsBlobStore } from './blobs/fs.js';
import type { Config } from './config.js';
import { AnthropicUpstream } from './model/anthropic.js';
import { DemoUpstream } from './model/demo.js';
import { VertexUpstream } from './model/vertex.js';
import type { ModelUpstream } from './model/upstream.js';
import type { SandboxLauncher } from './sandbox/launcher.js';
import type { ApiConnector } from './sandbox/local/api-bridge.js';
import type { ApiKeyStore } from './store/api-key-store.js';
import type { ConversationStore } from './store/conversation-store.js';
import { SqliteConversationStore } from './store/sqlite.js';

/**
 * The one place that picks, from the configuration, which adapter serves each port: the
 * service (app.ts) and `npm run keys` (keys-cli.ts) both take theirs from here, so that the two
 * always open the same store.
 *
 * The Google client libraries are loaded only when configured: they cost tens of MB of memory
 * each, which a local service or a one-off `npm run keys` should not pay.
 */

/** Embedded, the conversations and the API keys share one SQLite file in the data dir. */
const sqliteFile = (dataDir: string) => path.join(dataDir, 'clauderun.db');

type StoreSettings = Pick<Config, 'store' | 'dataDir'>;

export async function openConversationStore(config: StoreSettings): Promise<ConversationStore> {
  if (config.store.kind === 'sqlite') return new SqliteConversationStore(sqliteFile(config.dataDir));
  const [{ openFirestore }, { FirestoreConversationStore }] = await Promise.all([
    import('./store/firestore-client.js'),
    import('./store/firestore.js'),
  ]);
  return new FirestoreConversationStore(await openFirestore(config.store));
}

/** Beside the conversations, in the same store. */
export async function openApiKeyStore(config: StoreSettings): Promise<ApiKeyStore> {
  if (config.store.kind === 'sqlite') {
    const { SqliteApiKeyStore } = await import('./store/api-keys-sqlite.js');
    return new SqliteApiKeyStore(sqliteFile(config.dataDir));
  }
  const [{ openFirestore }, { FirestoreApiKeyStore }] = await Promise.all([
    import('./store/firestore-client.js'),
    import('./store/api-keys-firestore.js'),
  ]);
  return new FirestoreApiKeyStore(await openFirestore(config.store));
}

export async function openBlobStore(config: Pick<Config, 'blobs' | 'dataDir'>): Promise<BlobStore> {
  if (config.blobs.kind === 'fs') return new FsBlobStore(path.join(config.dataDir, 'blobs'));
  const [{ Storage }, { GcsBlobStore }, { PassThroughClient }] = await Promise.all([
    import('@google-cloud/storage'),
    import('./blobs/gcs.js'),
    import('google-auth-library'),
  ]);
  const { bucket, endpoint } = config.blobs;
  const storage = () =>
    endpoint === undefined ? new Storage() : new Storage({ apiEndpoint: endpoint.origin, projectId: 'local', authClient: new PassThroughClient() });
  // Uploads get a client of their own: starting a resumable upload without a precondition sets
  // its client's shared retry options to no retries (@google-cloud/storage 8.4.0, File
  // createResumableUpload and resumable-upload's Upload), and reads and deletes must keep theirs.
  return new GcsBlobStore(storage().bucket(bucket), storage().bucket(bucket));
}

/** `connectApi` is where a local sandbox's connections to the API go; Cloud Run sandboxes reach `config.apiUrl`. */
export async function openSandboxLauncher(config: Config, connectApi: ApiConnector, log: (message: string) => void): Promise<SandboxLauncher> {
  const sandbox = config.sandbox;
  if (sandbox.kind === 'cloudrun') {
    const { createCloudRunLauncher } = await import('./sandbox/cloudrun/index.js');
    return createCloudRunLauncher({ jobName: sandbox.jobName, apiUrl: config.apiUrl, endpoint: sandbox.endpoint, log });
  }
  // Loaded on demand too: `npm run keys` has no use for the sandbox code.
  const { createLocalLauncher, diskLimitsOf } = await import('./sandbox/local/index.js');
  return createLocalLauncher({
    dataDir: config.dataDir,
    connectApi,
    limits: { memoryBytes: config.limits.memoryMb * 1024 * 1024, cpus: config.limits.cpus, pids: config.limits.pids },
    disk: diskLimitsOf(config.limits),
    systemPath: config.systemPath,
    log,
  });
}

/** Without a model key or Vertex AI, the built-in demo model answers. Vertex loads google-auth-library on its first call. */
export function modelUpstream(config: Pick<Config, 'model'>): ModelUpstream {
  const model = config.model;
  if (model.upstream === 'anthropic') return new AnthropicUpstream(model.baseUrl, model.apiKey);
  if (model.upstream === 'vertex') return new VertexUpstream({ project: model.project, region: model.region, endpoint: model.endpoint });
  return new DemoUpstream();
}
