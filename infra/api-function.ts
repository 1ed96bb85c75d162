import * as gcp from '@pulumi/gcp';
import type * as pulumi from '@pulumi/pulumi';
import type { Names, Settings } from './config.js';
import { type DeployableSetting, functionEnvironment, functionRoles, type EnvironmentRefs, type Serve } from './function-roles.js';
import { API_ENTRY_POINT, type FunctionSource } from './function-source.js';
import type { ApiSecret, Secrets } from './secrets.js';

/**
 * The API as two HTTP Cloud Functions (2nd gen, nodejs22) built from one uploaded source: the
 * public one and the runner one (function-roles.ts says what each serves and how it is sized).
 * Configuration is plain environment variables; secrets are references to Secret Manager
 * versions, so no secret value is part of a function's configuration.
 */

export interface ApiFunctions {
  sourceBucket: gcp.storage.Bucket;
  public: gcp.cloudfunctionsv2.Function;
  runner: gcp.cloudfunctionsv2.Function;
  invokers: gcp.cloudrunv2.ServiceIamMember[];
}

export function apiFunctions(
  s: Settings,
  n: Names,
  deps: {
    source: FunctionSource;
    accounts: Record<Serve, gcp.serviceaccount.Account>;
    buildAccount: gcp.serviceaccount.Account;
    secrets: Secrets;
    env: EnvironmentRefs;
    /** The functions' accounts must hold their roles before they are built and started. */
    grants: pulumi.Resource[];
    apis: pulumi.Resource[];
  },
): ApiFunctions {
  // Only the functions' source archive: nothing else is kept here, so it may be deleted with the
  // stack. No age-based lifecycle: Cloud Functions rebuilds from this object when a function's
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
  // Named by content: a new build of the API is a new object, which redeploys both functions.
  const sourceObject = new gcp.storage.BucketObject('api-source', {
    bucket: sourceBucket.name,
    name: `api-${deps.source.hash.slice(0, 16)}.zip`,
    source: deps.source.archive,
  });

  const secretEnv = (key: DeployableSetting, { secret, version }: ApiSecret) => ({
    key,
    projectId: s.project,
    secret: secret.secretId,
    version: version.version,
  });

  const roles = functionRoles(s);
  const deploy = (serve: Serve, logical: string, name: string, description: string) => {
    const role = roles[serve];
    return new gcp.cloudfunctionsv2.Function(
      logical,
      {
        project: s.project,
        location: s.region,
        // Fixed, never auto-named: the public URL is derived from it, the NEG names the runner.
        name,
        description,
        buildConfig: {
          runtime: 'nodejs22',
          entryPoint: API_ENTRY_POINT,
          source: { storageSource: { bucket: sourceBucket.name, object: sourceObject.name } },
          serviceAccount: deps.buildAccount.id,
        },
        serviceConfig: {
          serviceAccountEmail: deps.accounts[serve].email,
          ingressSettings: role.ingress,
          allTrafficOnLatestRevision: true,
          availableMemory: role.memory,
          availableCpu: role.cpu,
          maxInstanceRequestConcurrency: role.concurrency,
          minInstanceCount: 0,
          maxInstanceCount: role.maxInstances,
          timeoutSeconds: role.timeoutSeconds,
          environmentVariables: functionEnvironment(s, n, serve, deps.env),
          secretEnvironmentVariables: [
            secretEnv('CLAUDERUN_TOKEN_SECRET', deps.secrets.tokenSecret),
            ...(role.modelKey && deps.secrets.modelKey !== undefined ? [secretEnv('ANTHROPIC_API_KEY', deps.secrets.modelKey)] : []),
          ],
        },
      },
      { dependsOn: [...deps.apis, ...deps.grants] },
    );
  };

  const publicFn = deploy('public', 'api-function', n.apiFunction, 'clauderun API (public routes)');
  const runnerFn = deploy('runner', 'runner-function', n.runnerFunction, 'clauderun API (routes for sandboxes: turns, model proxy)');

  // Anyone may invoke either: the public one decides who gets what itself; the runner one is
  // reachable only from inside (its ingress), by sandboxes that have no Google identity to show,
  // and every route of it takes a turn token.
  const invoker = (logical: string, fn: gcp.cloudfunctionsv2.Function) =>
    new gcp.cloudrunv2.ServiceIamMember(logical, {
      project: s.project,
      location: s.region,
      name: fn.name,
      role: 'roles/run.invoker',
      member: 'allUsers',
    });

  return {
    sourceBucket,
    public: publicFn,
    runner: runnerFn,
    invokers: [invoker('api-public-invoker', publicFn), invoker('runner-invoker', runnerFn)],
  };
}
