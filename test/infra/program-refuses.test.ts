import { expect, test } from 'vitest';
import { runProgram, writeTestIndexes } from './pulumi-mocks.js';

test('the program itself refuses header auth (X-User-Id trusted) in the cloud, before creating anything', async () => {
  await expect(
    runProgram({
      'gcp:project': 'clauderun-test',
      'gcp:region': 'europe-west1',
      'clauderun:authMode': 'header',
      'clauderun:firestoreIndexesFile': writeTestIndexes(),
    }),
  ).rejects.toThrow(/authMode header .* local use only/);
});
