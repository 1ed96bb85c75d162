import path from 'node:path';
import { apiFunctions } from './api-function.js';
import { enableApis } from './apis.js';
import { names, readModelKey, readSettings } from './config.js';
import { data } from './data.js';
import { egressPolicy } from './egress.js';
import { readFirestoreIndexes } from './firestore-indexes.js';
import { functionSource } from './function-source.js';
import { grants, serviceAccounts } from './identity.js';
import { sandboxImage } from './image.js';
import { sandboxNetwork } from './network.js';
import { readRootPackage, repoRoot } from './paths.js';
import { runnerEndpoint, runnerEndpointAddress, runnerEndpointUrl } from './runner-endpoint.js';
import { sandboxJob } from './sandbox-job.js';
import { secrets } from './secrets.js';
import { sweeperSchedule } from './sweeper.js';

/**
 * clauderun on Google Cloud: `cd infra && pulumi up`. One module per concern; this file only wires
 * them together and exports what a deployer needs. Build first (`npm run build` at the root): the
 * API's source archive and the sandbox image are made from dist/.
 */

const settings = readSettings();
const n = names(settings);
const root = repoRoot();
const rootPackage = readRootPackage(root);

// Every resource waits for the APIs it is created through to be enabled.
const apis = enableApis(settings);

// The sandboxes' network, the one address they may reach, and the policy that says so.
const network = sandboxNetwork(settings, n, apis);
const runnerAddress = runnerEndpointAddress(settings, n, network);
const egress = egressPolicy(settings, n, { network, runnerAddress, apis });

const store = data(settings, n, readFirestoreIndexes(path.resolve(root, settings.firestoreIndexesFile)), apis);
const keys = secrets(settings, n, readModelKey(settings), apis);
const accounts = serviceAccounts(settings, n, apis);
const { image } = sandboxImage(settings, n, root, rootPackage, apis);

const job = sandboxJob(settings, n, { imageRef: image.ref, account: accounts.sandbox, network, egress, apis });

// Granted on the resources they concern, so they come after them.
const granted = grants(settings, accounts, { job, stateBucket: store.stateBucket, secrets: keys }, apis);

const api = apiFunctions(settings, n, {
  source: functionSource(root, rootPackage),
  accounts: { public: accounts.api, runner: accounts.runner },
  buildAccount: accounts.build,
  secrets: keys,
  env: { jobName: job.name, stateBucket: store.stateBucket.name, runnerUrl: runnerEndpointUrl(runnerAddress), sweeperEmail: accounts.sweeper.email },
  grants: granted,
  apis,
});

runnerEndpoint(settings, n, { network, address: runnerAddress, runnerFunction: api.runner });
sweeperSchedule(settings, n, { sweeper: accounts.sweeper, publicFunction: api.public, apis });

/** The API's public URL: `curl $(pulumi stack output apiUrl)/healthz`. */
export const apiUrl = api.public.url;
/** Where sandboxes reach the runner function (an internal address: reachable from the sandbox network only). */
export const runnerUrl = runnerEndpointUrl(runnerAddress);
export const jobName = job.name;
export const bucketName = store.stateBucket.name;
/** The sandbox image the job runs, by digest. */
export const imageRef = image.ref;
