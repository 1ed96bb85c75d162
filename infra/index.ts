import path from 'node:path';
import { apiFunction } from './api-function.js';
import { enableApis } from './apis.js';
import { names, readModelKey, readSettings } from './config.js';
import { data } from './data.js';
import { readFirestoreIndexes } from './firestore-indexes.js';
import { functionSource } from './function-source.js';
import { grants, serviceAccounts } from './identity.js';
import { sandboxImage } from './image.js';
import { sandboxNetwork } from './network.js';
import { readRootPackage, repoRoot } from './paths.js';
import { sandboxJob } from './sandbox-job.js';
import { secrets } from './secrets.js';

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

const network = sandboxNetwork(settings, n, apis);
const store = data(settings, n, readFirestoreIndexes(path.resolve(root, settings.firestoreIndexesFile)), apis);
const keys = secrets(settings, n, readModelKey(), apis);
const accounts = serviceAccounts(settings, n, apis);
const { image } = sandboxImage(settings, n, root, rootPackage, apis);

const job = sandboxJob(settings, n, { imageRef: image.ref, account: accounts.sandbox, network, apis });

// Granted on the resources they concern, so they come after them.
const granted = grants(settings, accounts, { job, stateBucket: store.stateBucket, secrets: keys }, apis);

const api = apiFunction(settings, n, {
  source: functionSource(root, rootPackage),
  apiAccount: accounts.api,
  buildAccount: accounts.build,
  secrets: keys,
  job,
  stateBucket: store.stateBucket,
  grants: granted,
  apis,
});

/** The API's public URL: `curl $(pulumi stack output apiUrl)/healthz`. */
export const apiUrl = api.fn.url;
export const jobName = job.name;
export const bucketName = store.stateBucket.name;
/** The sandbox image the job runs, by digest. */
export const imageRef = image.ref;
