import type { Readable } from 'node:stream';
import { BlobTooLargeError } from '../blobs/blob-store.js';
import type { Manifest } from '../workspace/manifest.js';
import { StateArchiveError } from '../workspace/state-archive.js';
import type { StateBlobs } from '../workspace/state-blobs.js';
import { ServiceError } from './errors.js';

/** Stores a state (a runner's or a client's change), a state over the limits or unreadable refused as such. */
export async function storeState(states: StateBlobs, key: string, body: Readable): Promise<Manifest> {
  try {
    return await states.put(key, body);
  } catch (error) {
    throw asServiceError(error);
  }
}

/** What the workspace layer throws about a state, in the API's terms; anything else is a fault, unchanged. */
export function asServiceError(error: unknown): unknown {
  if (error instanceof BlobTooLargeError)
    return new ServiceError('too_large', `the state archive is over the limit of ${error.limitBytes} bytes compressed`);
  if (error instanceof StateArchiveError) return new ServiceError(error.kind === 'too_large' ? 'too_large' : 'invalid_request', error.message);
  return error;
}
