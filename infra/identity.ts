import * as gcp from '@pulumi/gcp';
import * as pulumi from '@pulumi/pulumi';
import type { Names, Settings } from './config.js';
import type { Secrets } from './secrets.js';

/**
 * Who may do what. Three service accounts, each with only what its code calls:
 *
 * - sandbox: the identity of the Cloud Run job's tasks. It has NO roles anywhere. The agent can
 *   read this account's token from the metadata server, so the token must be worth nothing.
 * - api: the function's identity. Firestore user (the store), run/get/cancel with overrides on
 *   this one job (job-level IAM, a custom role of exactly those permissions), the state bucket's
 *   objects, and read access to its two secrets, which no one else is granted.
 * - build: what Cloud Build runs as when it builds the function from source (roles/run.builder:
 *   fetch the source, push the function's image, write build logs). Never the project's default
 *   compute account, which may be an Editor.
 */

export interface Accounts {
  sandbox: gcp.serviceaccount.Account;
  api: gcp.serviceaccount.Account;
  build: gcp.serviceaccount.Account;
}

export function serviceAccounts(s: Settings, n: Names, apis: pulumi.Resource[]): Accounts {
  const account = (logical: string, accountId: string, displayName: string, description: string) =>
    new gcp.serviceaccount.Account(logical, { project: s.project, accountId, displayName, description }, { dependsOn: apis });
  return {
    sandbox: account('sandbox-account', n.sandboxAccount, 'clauderun sandbox', 'Runs agent sandboxes. Must never be granted any role.'),
    api: account('api-account', n.apiAccount, 'clauderun API', 'Runs the clauderun API function.'),
    build: account('build-account', n.buildAccount, 'clauderun API build', 'Builds the clauderun API function from source.'),
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

export interface GrantTargets {
  job: gcp.cloudrunv2.Job;
  stateBucket: gcp.storage.Bucket;
  secrets: Secrets;
}

export function grants(s: Settings, accounts: Accounts, targets: GrantTargets, apis: pulumi.Resource[]): pulumi.Resource[] {
  const api = member(accounts.api);
  const opts = { dependsOn: apis };

  const firestoreUser = new gcp.projects.IAMMember('api-firestore-user', { project: s.project, role: 'roles/datastore.user', member: api }, opts);

  const launcherRole = new gcp.projects.IAMCustomRole(
    'job-launcher-role',
    {
      project: s.project,
      roleId: 'clauderunJobLauncher',
      title: 'clauderun job launcher',
      description: 'Start sandbox executions with overrides, watch and cancel them (granted on the one job only)',
      permissions: [...JOB_LAUNCHER_PERMISSIONS],
      stage: 'GA',
    },
    opts,
  );
  const jobLauncher = new gcp.cloudrunv2.JobIamMember(
    'api-job-launcher',
    { project: s.project, location: s.region, name: targets.job.name, role: launcherRole.name, member: api },
    opts,
  );

  const stateObjects = new gcp.storage.BucketIAMMember(
    'api-state-objects',
    { bucket: targets.stateBucket.name, role: 'roles/storage.objectUser', member: api },
    opts,
  );

  const secretReaders = [targets.secrets.modelKey, targets.secrets.tokenSecret].map(
    ({ secret }, i) =>
      new gcp.secretmanager.SecretIamMember(
        i === 0 ? 'api-reads-model-key' : 'api-reads-token-secret',
        { project: s.project, secretId: secret.secretId, role: SECRET_READER_ROLE, member: api },
        opts,
      ),
  );

  const builder = new gcp.projects.IAMMember(
    'build-run-builder',
    { project: s.project, role: 'roles/run.builder', member: member(accounts.build) },
    opts,
  );

  // accounts.sandbox: deliberately nothing.
  return [firestoreUser, jobLauncher, stateObjects, ...secretReaders, builder];
}
