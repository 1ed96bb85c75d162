/**
 * What is kept beside a state in the blob store, under the state's key and a suffix: its manifest
 * and its workspace's exports. All of it can be made again from the state, and goes when it goes.
 * Imports nothing: the deployment's bucket lifecycle (infra/data.ts) names the same suffixes.
 */
export const DERIVED_SUFFIXES = {
  manifest: '.manifest.json',
  'tar.gz': '.workspace.tar.gz',
  zip: '.workspace.zip',
} as const;

export const derivedKeys = (stateKey: string): { [K in keyof typeof DERIVED_SUFFIXES]: string } => ({
  manifest: `${stateKey}${DERIVED_SUFFIXES.manifest}`,
  'tar.gz': `${stateKey}${DERIVED_SUFFIXES['tar.gz']}`,
  zip: `${stateKey}${DERIVED_SUFFIXES.zip}`,
});
