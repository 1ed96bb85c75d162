import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as pulumi from '@pulumi/pulumi';
import { vi } from 'vitest';

/**
 * Runs the Pulumi program in infra/ against mocks: no CLI, no plugins, no cloud. Every resource
 * the program registers is recorded with its inputs (outputs resolved); the mock answers with the
 * fields Google would compute (emails, URLs, digests...). Each test file runs the program once:
 * vitest gives every file a fresh module registry, and the program registers its resources when
 * it is imported.
 */

// Pulumi's mocks hand over resource inputs and state untyped, and each test reads them as the
// provider's schema for that type: typing them per resource type would repeat the providers' schemas.
// biome-ignore lint/suspicious/noExplicitAny: see above
type Untyped = Record<string, any>;

export interface Recorded {
  type: string;
  name: string;
  inputs: Untyped;
  state: Untyped;
}

export interface ProgramRun {
  resources: Recorded[];
  outputs: { apiUrl: string; runnerUrl: string; jobName: string; bucketName: string; imageRef: string };
  /** Every resource of one type token, e.g. `gcp:storage/bucket:Bucket`. */
  ofType(type: string): Recorded[];
  /** The one resource with this logical name. */
  named(name: string): Recorded;
}

/** Resolves an Output in a test (mocks run with preview=false, so every value is known). */
export function promiseOf<T>(output: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) => output.apply((value) => resolve(value)));
}

/** The firestore.indexes.json the program test deploys (the store's real file is tested separately). */
export const TEST_INDEXES = {
  indexes: [
    {
      collectionGroup: 'conversations',
      queryScope: 'COLLECTION',
      fields: [
        { fieldPath: 'userId', order: 'ASCENDING' },
        { fieldPath: 'updatedAt', order: 'DESCENDING' },
        { fieldPath: '__name__', order: 'DESCENDING' },
      ],
    },
    {
      collectionGroup: 'turns',
      queryScope: 'COLLECTION',
      fields: [
        { fieldPath: 'conversationId', order: 'ASCENDING' },
        { fieldPath: 'createdAt', order: 'ASCENDING' },
      ],
    },
  ],
  fieldOverrides: [],
};

export function writeTestIndexes(): string {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'clauderun-infra-')), 'firestore.indexes.json');
  writeFileSync(file, JSON.stringify(TEST_INDEXES));
  return file;
}

export const MODEL_KEY = 'sk-ant-api03-TEST-MODEL-KEY-never-in-plain-config';
export const TOKEN_SECRET = 'TESTTOKENSECRET'.repeat(5);
export const ACCESS_TOKEN = 'ya29.TEST-DEPLOYER-ACCESS-TOKEN';
/** What the mock's RandomId answers (8 hex digits for 4 bytes). */
export const RANDOM_HEX = 'a1b2c3d4';

/** The provider would append a random suffix to an unnamed resource: so does the mock. */
const autoName = (logical: string) => `${logical}-a1b2c3d`;

function computed(type: string, name: string, inputs: Untyped, project: string): { id: string; state: Untyped } {
  const resourceName: string = inputs.name ?? autoName(name);
  const state: Untyped = { ...inputs, name: resourceName };
  let id = `${resourceName}-id`;
  switch (type) {
    case 'gcp:serviceaccount/account:Account': {
      const email = `${inputs.accountId}@${project}.iam.gserviceaccount.com`;
      id = `projects/${project}/serviceAccounts/${email}`;
      Object.assign(state, { email, name: id, member: `serviceAccount:${email}` });
      break;
    }
    case 'gcp:cloudfunctionsv2/function:Function':
      // What Google answers for a 2nd gen function.
      state.url = `https://${inputs.location}-${inputs.project ?? project}.cloudfunctions.net/${resourceName}`;
      state.serviceConfig = { ...inputs.serviceConfig, uri: `https://${resourceName}-xyz-ew.a.run.app` };
      break;
    case 'gcp:secretmanager/secret:Secret':
      id = `projects/${project}/secrets/${inputs.secretId}`;
      state.name = id;
      break;
    case 'gcp:secretmanager/secretVersion:SecretVersion':
      state.version = '1';
      id = `${inputs.secret}/versions/1`;
      state.name = id;
      break;
    case 'gcp:projects/iAMCustomRole:IAMCustomRole':
      id = `projects/${project}/roles/${inputs.roleId}`;
      state.name = id;
      break;
    case 'gcp:compute/network:Network':
      id = `projects/${project}/global/networks/${resourceName}`;
      break;
    case 'gcp:compute/subnetwork:Subnetwork':
      id = `projects/${project}/regions/${inputs.region}/subnetworks/${resourceName}`;
      break;
    case 'gcp:compute/networkFirewallPolicy:NetworkFirewallPolicy':
      id = `projects/${project}/global/firewallPolicies/${resourceName}`;
      break;
    case 'docker-build:index:Image': {
      const digest = `sha256:${'0123456789abcdef'.repeat(4)}`;
      Object.assign(state, { digest, ref: `${inputs.tags[0]}@${digest}` });
      id = digest;
      break;
    }
    case 'random:index/randomPassword:RandomPassword':
      state.result = TOKEN_SECRET;
      break;
    case 'random:index/randomId:RandomId':
      state.hex = RANDOM_HEX;
      break;
    case 'gcp:compute/address:Address':
      // Google keeps the address asked for (an internal address in the subnet's range).
      id = `projects/${project}/regions/${inputs.region}/addresses/${resourceName}`;
      state.address = inputs.address;
      break;
    case 'gcp:compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup':
      id = `projects/${project}/regions/${inputs.region}/networkEndpointGroups/${resourceName}`;
      break;
    case 'gcp:compute/regionBackendService:RegionBackendService':
      id = `projects/${project}/regions/${inputs.region}/backendServices/${resourceName}`;
      break;
    case 'gcp:compute/regionUrlMap:RegionUrlMap':
      id = `projects/${project}/regions/${inputs.region}/urlMaps/${resourceName}`;
      break;
    case 'gcp:compute/regionTargetHttpProxy:RegionTargetHttpProxy':
      id = `projects/${project}/regions/${inputs.region}/targetHttpProxies/${resourceName}`;
      break;
  }
  return { id, state };
}

/**
 * Sets the stack's configuration and the mocks, then imports the program and waits for every
 * registration. `config` keys are full (`gcp:project`, `clauderun:authMode`); the model key is set
 * unless `modelKey: false`.
 */
export async function runProgram(config: Record<string, string>, options: { modelKey?: boolean } = {}): Promise<ProgramRun> {
  const project = config['gcp:project'] ?? 'unset';
  const resources: Recorded[] = [];
  // Without `modelKey` the stack has no anthropicApiKey at all (Claude on Vertex AI needs none).
  const key: Record<string, string> = (options.modelKey ?? true) ? { 'clauderun:anthropicApiKey': MODEL_KEY } : {};
  pulumi.runtime.setAllConfig({ ...key, ...config }, Object.keys(key));
  await pulumi.runtime.setMocks(
    {
      newResource(args) {
        const { id, state } = computed(args.type, args.name, args.inputs as Untyped, project);
        resources.push({ type: args.type, name: args.name, inputs: args.inputs as Untyped, state });
        return { id, state };
      },
      call(args) {
        if (args.token === 'gcp:organizations/getClientConfig:getClientConfig') {
          return { accessToken: ACCESS_TOKEN, project, region: config['gcp:region'], id: 'client-config' };
        }
        throw new Error(`unexpected call in the infra program: ${args.token}`);
      },
    },
    'clauderun',
    'test',
    false,
  );
  // A fresh copy of the program even where test files share a module registry.
  vi.resetModules();
  const program = (await import('../../infra/index.js')) as Record<string, pulumi.Output<string>>;
  const outputs = {
    apiUrl: await promiseOf(program.apiUrl!),
    runnerUrl: await promiseOf(program.runnerUrl!),
    jobName: await promiseOf(program.jobName!),
    bucketName: await promiseOf(program.bucketName!),
    imageRef: await promiseOf(program.imageRef!),
  };
  // Resources whose inputs wait on other outputs register later: wait for every pending RPC.
  await pulumi.runtime.disconnect();
  return {
    resources,
    outputs,
    ofType: (type) => resources.filter((r) => r.type === type),
    named(name) {
      const found = resources.filter((r) => r.name === name);
      if (found.length !== 1) throw new Error(`expected one resource named ${name}, found ${found.length}`);
      return found[0]!;
    },
  };
}

/** Type tokens of every IAM grant resource in @pulumi/gcp (…IAMMember, …IamBinding, …IAMPolicy…). */
export const isIamGrant = (r: Recorded) => /(iam|IAM|Iam)(Member|Binding|Policy)$/.test(r.type);

/** Every principal a grant names (member, members, or the bindings of a policy document). */
export function principalsOf(r: Recorded): string[] {
  const found: string[] = [];
  if (typeof r.inputs.member === 'string') found.push(r.inputs.member);
  if (Array.isArray(r.inputs.members)) found.push(...(r.inputs.members as string[]));
  if (typeof r.inputs.policyData === 'string') {
    const policy = JSON.parse(r.inputs.policyData) as { bindings?: { members?: string[] }[] };
    for (const binding of policy.bindings ?? []) found.push(...(binding.members ?? []));
  }
  return found;
}

/** Plain values of an input tree (secret-wrapped values included) as one searchable text. */
export function flatten(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? String(v) : v)) ?? '';
}
