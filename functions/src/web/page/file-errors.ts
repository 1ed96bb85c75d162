import { ApiError } from './api.js';
import { describeError } from './errors.js';

/**
 * Why a file action failed, in words that fit files: the page's general sentences (errors.ts)
 * speak of conversations and messages. `what` names the action and the file ("upload a.txt").
 */
export function describeFileError(what: string, error: unknown): string {
  return `Could not ${what}: ${fileReason(error)}`;
}

function fileReason(error: unknown): string {
  if (!(error instanceof ApiError)) return describeError(error).summary;
  switch (error.code) {
    case 'conflict':
      return 'a turn is running in this conversation. Try again once it has ended.';
    case 'too_large':
      // The service's message names the limit that was hit: a file's, or the whole workspace's.
      return `it is too large (the service said: ${error.apiMessage}).`;
    case 'not_found':
      return 'it is not there (any more).';
    case 'invalid_request':
      return `the service refused its name (${error.apiMessage}).`;
    default: {
      const { summary, detail } = describeError(error);
      return detail === undefined ? summary : `${summary} (${detail})`;
    }
  }
}
