import * as gcp from '@pulumi/gcp';
import * as pulumi from '@pulumi/pulumi';
import * as random from '@pulumi/random';
import type { Names, Settings } from './config.js';
import { functionRoles } from './function-roles.js';
import type { ApiSecret, Secrets } from './secrets.js';

/**
 * Who may do what. Five service accounts, each with only what its code calls:
 *
 * - sandbox: the identity of the Cloud Run job's tasks. It has NO roles anywhere. The agent can
 *   read this account's token from the metadata server, so the token must be worth nothing.
 * - api: the public function's identity. runner: the runner function's. Both are Firestore users,
 *   may run/get/cancel the one job with overrides (job-level IAM, a custom role of exactly those
 *   permissions: either may have to stop an execution), use the state bucket's objects, and read
 *   the token-signing key. Only the runner reads the model key (with Claude on Vertex AI: only
 *   the runner is a Vertex AI User, and there is no key): only its model proxy calls the model,
 *   so a flaw in a public route cannot reveal it or call it.
 * - sweeper: the identity whose OIDC token Cloud Scheduler sends to the sweeper route. It has no
 *   roles: the route checks the token's email and audience, nothing else trusts it.
 * - build: what Cloud Build runs as when it builds a function from source (roles/run.builder:
 *   fetch the source, push the function's image, write build logs). Never the project's default
 *   compute account, which may be an Editor.
 */

export interface Accounts {
  sandbox: gcp.serviceaccount.Account;
  api: gcp.serviceaccount.Account;
  runner: gcp.serviceaccount.Account;
  sweeper: gcp.serviceaccount.Account;
  build: gcp.serviceaccount.Account;
}

export function serviceAccounts(s: Settings, n: Names, apis: pulumi.Resource[]): Accounts {
  const account = (logical: string, accountId: string, displayName: string, description: string) =>
    new gcp.serviceaccount.Account(logical, { project: s.project, accountId, displayName, description }, { dependsOn: apis });
  return {
    sandbox: account('sandbox-account', n.sandboxAccount, 'clauderun sandbox', 'Runs agent sandboxes. Must never be granted any role.'),
    api: account('api-account', n.apiAccount, 'clauderun API', 'Runs the public clauderun function.'),
    runner: account('runner-account', n.runnerAccount, 'clauderun runner API', 'Runs the function sandboxes call (turns, model proxy).'),
    sweeper: account('sweeper-account', n.sweeperAccount, 'clauderun sweeper', 'Signs Cloud Scheduler calls to the sweeper route. No roles.'),
    build: account('build-account', n.buildAccount, 'clauderun API build', 'Builds the clauderun functions from source.'),
  };
}

export const member = (account: gcp.serviceaccount.Account) => pulumi.interpolate`serviceAccount:${account.email}`;

/** What the Cloud Run launcher calls (runJob with overrides, getExecution, cancelExecution). */
export const JOB_LAUNCHER_PERMISSIONS = [
  'run.jobs.get',
  'run.jobs.run',
  'run.jobs.runWithOverrides',
  'run.executions.get',
  'run.executions.cancel',
] as const;

export const SECRET_READER_ROLE = 'roles/secretmanager.secretAccessor';
/**
 * What calling Claude on Vertex AI takes: `aiplatform.endpoints.predict`
 * (cloud.google.com/vertex-ai/generative-ai/docs/partner-models/use-partner-models, "Set required
 * permissions"). The Vertex AI User role holds it and much more; Google advises a custom role
 * with only what is needed (cloud.google.com/vertex-ai/docs/general/access-control), so the
 * runner's account gets one with this permission alone.
 */
export const MODEL_CALLER_PERMISSIONS = ['aiplatform.endpoints.predict'] as const;
export const JOB_LAUNCHER_ROLE_PREFIX = 'clauderunJobLauncher';
export const MODEL_CALLER_ROLE_PREFIX = 'clauderunModelCaller';

/**
 * A custom role's id stays taken long after the role is deleted: 7 days deleted (and restorable),
 * then up to 30 more while it is purged; only 37 days after the deletion can the id be used again
 * (cloud.google.com/iam/docs/creating-custom-roles, "Deleting a custom role"). So the id carries
 * the stack's name (two stacks in one project never share it) and a random part kept in the
 * stack's state (a stack destroyed and deployed again gets a fresh id instead of a refusal).
 * Role ids allow letters, digits, `_` and `.`, up to 64 characters.
 */
export function customRoleId(prefix: string, stack: string, suffix: string): string {
  const stackPart = stack.replace(/[^A-Za-z0-9]/g, '_').slice(0, 30);
  return `${prefix}_${stackPart}_${suffix}`;
}

export interface GrantTargets {
  job: gcp.cloudrunv2.Job;
  stateBucket: gcp.storage.Bucket;
  secrets: Secrets;
}

export function grants(s: Settings, accounts: Accounts, targets: GrantTargets, apis: pulumi.Resource[]): pulumi.Resource[] {
  const opts = { dependsOn: apis };

  const roleSuffix = new random.RandomId('job-launcher-role-suffix', { byteLength: 4 });
  const launcherRole = new gcp.projects.IAMCustomRole(
    'job-launcher-role',
    {
      project: s.project,
      roleId: roleSuffix.hex.apply((hex) => customRoleId(JOB_LAUNCHER_ROLE_PREFIX, pulumi.getStack(), hex)),
      title: 'clauderun job launcher',
      description: 'Start sandbox executions with overrides, watch and cancel them (granted on the one job only)',
      permissions: [...JOB_LAUNCHER_PERMISSIONS],
      stage: 'GA',
    },
    opts,
  );
  const modelCallerRole =
    s.modelUpstream === 'vertex'
      ? new gcp.projects.IAMCustomRole(
          'model-caller-role',
          {
            project: s.project,
            roleId: roleSuffix.hex.apply((hex) => customRoleId(MODEL_CALLER_ROLE_PREFIX, pulumi.getStack(), hex)),
            title: 'clauderun model caller',
            description: 'Call Claude on Vertex AI (rawPredict, streamRawPredict, count-tokens)',
            permissions: [...MODEL_CALLER_PERMISSIONS],
            stage: 'GA',
          },
          opts,
        )
      : undefined;

  /** What each function's account gets; `prefix` names its grants (api-..., runner-...). */
  const functionGrants = (prefix: string, account: gcp.serviceaccount.Account, callsModel: boolean) => {
    const who = member(account);
    const readSecret = (logical: string, { secret }: ApiSecret) =>
      new gcp.secretmanager.SecretIamMember(logical, { project: s.project, secretId: secret.secretId, role: SECRET_READER_ROLE, member: who }, opts);
    return [
      new gcp.projects.IAMMember(`${prefix}-firestore-user`, { project: s.project, role: 'roles/datastore.user', member: who }, opts),
      new gcp.cloudrunv2.JobIamMember(
        `${prefix}-job-launcher`,
        { project: s.project, location: s.region, name: targets.job.name, role: launcherRole.name, member: who },
        opts,
      ),
      new gcp.storage.BucketIAMMember(
        `${prefix}-state-objects`,
        { bucket: targets.stateBucket.name, role: 'roles/storage.objectUser', member: who },
        opts,
      ),
      readSecret(`${prefix}-reads-token-secret`, targets.secrets.tokenSecret),
      ...(callsModel && targets.secrets.modelKey !== undefined ? [readSecret(`${prefix}-reads-model-key`, targets.secrets.modelKey)] : []),
      // Claude on Vertex AI is called in this project, with this account's own tokens.
      ...(callsModel && modelCallerRole !== undefined
        ? [new gcp.projects.IAMMember(`${prefix}-model-caller`, { project: s.project, role: modelCallerRole.name, member: who }, opts)]
        : []),
      // Running a job as its service account may take actAs on that account as well as the run
      // permissions (reported for the v2 :run method; Google's jobs pages name only the latter).
      // The sandbox account holds no role at all, so acting as it grants nothing more.
      new gcp.serviceaccount.IAMMember(
        `${prefix}-acts-as-sandbox`,
        { serviceAccountId: accounts.sandbox.name, role: 'roles/iam.serviceAccountUser', member: who },
        opts,
      ),
    ];
  };

  const builder = new gcp.projects.IAMMember(
    'build-run-builder',
    { project: s.project, role: 'roles/run.builder', member: member(accounts.build) },
    opts,
  );

  // accounts.sandbox and accounts.sweeper: deliberately nothing.
  const roles = functionRoles(s);
  return [
    ...functionGrants('api', accounts.api, roles.public.modelKey),
    ...functionGrants('runner', accounts.runner, roles.runner.modelKey),
    builder,
  ];
}
