import * as gcp from '@pulumi/gcp';
import * as pulumi from '@pulumi/pulumi';
import type { Names, Settings } from './config.js';
import { API_ENTRY_POINT, type FunctionSource } from './function-source.js';
import type { Secrets } from './secrets.js';

/**
 * The API: an HTTP Cloud Function (2nd gen, nodejs22), public over HTTPS (the service
 * authenticates every /api call itself; /internal routes take a turn token). Its configuration is
 * plain environment variables; its two secrets are references to Secret Manager versions, so no
 * secret value is part of the function's configuration.
 */

/** The function's plain environment (see functions/src/config.ts). No secret belongs here. */
export function apiEnvironment(s: Settings, n: Names, refs: { jobName: pulumi.Input<string>; stateBucket: pulumi.Input<string> }) {
  return {
    CLAUDERUN_STORE: 'firestore',
    GOOGLE_CLOUD_PROJECT: s.project,
    CLAUDERUN_BLOBS: 'gcs',
    CLAUDERUN_GCS_BUCKET: refs.stateBucket,
    CLAUDERUN_SANDBOX: 'cloudrun',
    CLAUDERUN_CLOUDRUN_JOB: pulumi.interpolate`projects/${s.project}/locations/${s.region}/jobs/${refs.jobName}`,
    // Predicted from the configuration (see names()): the function cannot ask for its own URL.
    CLAUDERUN_API_URL: n.apiUrl,
    CLAUDERUN_AUTH: s.authMode,
    CLAUDERUN_TURN_TIMEOUT_SECONDS: String(s.turnTimeoutSeconds),
    CLAUDERUN_SANDBOX_MEMORY_MB: String(s.sandboxMemoryMb),
    CLAUDERUN_SANDBOX_CPUS: String(s.sandboxCpus),
    // The only writable place in a function's filesystem; nothing durable is kept there.
    CLAUDERUN_DATA_DIR: '/tmp/clauderun',
  };
}

/** A turn's synchronous POST is held until the turn ends: the request timeout outlasts a turn. */
export const apiTimeoutSeconds = (s: Settings) => Math.min(3600, s.turnTimeoutSeconds + 60);

export interface ApiFunction {
  sourceBucket: gcp.storage.Bucket;
  fn: gcp.cloudfunctionsv2.Function;
  invoker: gcp.cloudrunv2.ServiceIamMember;
}

export function apiFunction(
  s: Settings,
  n: Names,
  deps: {
    source: FunctionSource;
    apiAccount: gcp.serviceaccount.Account;
    buildAccount: gcp.serviceaccount.Account;
    secrets: Secrets;
    job: gcp.cloudrunv2.Job;
    stateBucket: gcp.storage.Bucket;
    /** The function's accounts must hold their roles before it is built and started. */
    grants: pulumi.Resource[];
    apis: pulumi.Resource[];
  },
): ApiFunction {
  // Only the API's source archive: nothing else is kept here, so it may be deleted with the stack.
  // No age-based lifecycle: Cloud Functions rebuilds from this object when the function's
  // configuration changes; Pulumi deletes an archive once a new one replaces it.
  const sourceBucket = new gcp.storage.Bucket(
    'source-bucket',
    {
      project: s.project,
      name: n.sourceBucket,
      location: s.region,
      uniformBucketLevelAccess: true,
      publicAccessPrevention: 'enforced',
      forceDestroy: true,
      deletionPolicy: 'DELETE',
    },
    { dependsOn: deps.apis },
  );
  // Named by content: a new build of the API is a new object, which redeploys the function.
  const sourceObject = new gcp.storage.BucketObject('api-source', {
    bucket: sourceBucket.name,
    name: `api-${deps.source.hash.slice(0, 16)}.zip`,
    source: deps.source.archive,
  });

  const secretEnv = (key: string, { secret, version }: Secrets['modelKey']) => ({
    key,
    projectId: s.project,
    secret: secret.secretId,
    version: version.version,
  });

  const fn = new gcp.cloudfunctionsv2.Function(
    'api-function',
    {
      project: s.project,
      location: s.region,
      // Fixed, never auto-named: the URL handed to sandboxes is derived from it.
      name: n.apiFunction,
      description: 'clauderun API',
      buildConfig: {
        runtime: 'nodejs22',
        entryPoint: API_ENTRY_POINT,
        source: { storageSource: { bucket: sourceBucket.name, object: sourceObject.name } },
        serviceAccount: deps.buildAccount.id,
      },
      serviceConfig: {
        serviceAccountEmail: deps.apiAccount.email,
        ingressSettings: 'ALLOW_ALL',
        allTrafficOnLatestRevision: true,
        availableMemory: '512Mi',
        availableCpu: '1',
        // Most requests wait (on a turn, on SSE): one instance serves many.
        maxInstanceRequestConcurrency: 80,
        minInstanceCount: 0,
        maxInstanceCount: s.apiMaxInstances,
        timeoutSeconds: apiTimeoutSeconds(s),
        environmentVariables: apiEnvironment(s, n, { jobName: deps.job.name, stateBucket: deps.stateBucket.name }),
        secretEnvironmentVariables: [
          secretEnv('ANTHROPIC_API_KEY', deps.secrets.modelKey),
          secretEnv('CLAUDERUN_TOKEN_SECRET', deps.secrets.tokenSecret),
        ],
      },
    },
    { dependsOn: [...deps.apis, ...deps.grants] },
  );

  // Public HTTPS: anyone may call; the service decides who gets what.
  const invoker = new gcp.cloudrunv2.ServiceIamMember('api-public-invoker', {
    project: s.project,
    location: s.region,
    name: fn.name,
    role: 'roles/run.invoker',
    member: 'allUsers',
  });

  return { sourceBucket, fn, invoker };
}
