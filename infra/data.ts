import * as gcp from '@pulumi/gcp';
import type * as pulumi from '@pulumi/pulumi';
import { deletionPolicy, type Names, type Settings } from './config.js';
import { indexKey, type FirestoreIndex } from './firestore-indexes.js';
import { DERIVED_SUFFIXES } from '../functions/src/workspace/derived-keys.js';

/** Object names that end so are a state's manifest or exports (functions/src/workspace/derived-keys.ts). */
const DERIVED = Object.values(DERIVED_SUFFIXES);
const DERIVED_AGE_DAYS = 7;

/**
 * Where conversations live: the Firestore database (native mode) with the composite indexes the
 * store declares, and the Cloud Storage bucket of state archives (agent session + workspace).
 * Both are protected from deletion unless the stack says `protect: false`.
 */

export interface Data {
  database: gcp.firestore.Database;
  indexes: gcp.firestore.Index[];
  stateBucket: gcp.storage.Bucket;
}

export function data(s: Settings, n: Names, indexes: FirestoreIndex[], apis: pulumi.Resource[]): Data {
  const database = new gcp.firestore.Database(
    'firestore',
    {
      project: s.project,
      // The service uses the default database (@google-cloud/firestore's default).
      name: '(default)',
      locationId: s.firestoreLocation,
      type: 'FIRESTORE_NATIVE',
      concurrencyMode: 'PESSIMISTIC',
      deleteProtectionState: s.protect ? 'DELETE_PROTECTION_ENABLED' : 'DELETE_PROTECTION_DISABLED',
      deletionPolicy: deletionPolicy(s),
    },
    { dependsOn: apis },
  );

  const firestoreIndexes = indexes.map(
    (index) =>
      new gcp.firestore.Index(
        `firestore-index-${indexKey(index)}`,
        {
          project: s.project,
          database: database.name,
          collection: index.collectionGroup,
          queryScope: index.queryScope,
          fields: index.fields.map((f) =>
            'order' in f ? { fieldPath: f.fieldPath, order: f.order } : { fieldPath: f.fieldPath, arrayConfig: f.arrayConfig },
          ),
        },
        // An index is built inside its database: it cannot be created before it.
        { dependsOn: [database] },
      ),
  );

  const stateBucket = new gcp.storage.Bucket(
    'state-bucket',
    {
      project: s.project,
      name: n.stateBucket,
      location: s.region,
      storageClass: 'STANDARD',
      // Never public: IAM only (no ACLs), and public access refused whatever IAM says.
      uniformBucketLevelAccess: true,
      publicAccessPrevention: 'enforced',
      // A deleted conversation's archive (and a replaced one) becomes a noncurrent version, kept
      // `deletedStateRetentionDays` days for recovery, then removed by the lifecycle rule below.
      versioning: { enabled: true },
      lifecycleRules: [
        {
          action: { type: 'Delete' },
          condition: { daysSinceNoncurrentTime: s.deletedStateRetentionDays, withState: 'ARCHIVED' },
        },
        // A state's manifest and exports are made again from it when missing: a replaced or
        // deleted one is not kept, and a live one goes after a week (one written just as its
        // state was deleted would otherwise stay for good).
        {
          action: { type: 'Delete' },
          // Without the flag the provider leaves a 0 out of the rule (and the rule would match every age).
          condition: { matchesSuffixes: DERIVED, withState: 'ARCHIVED', daysSinceNoncurrentTime: 0, sendDaysSinceNoncurrentTimeIfZero: true },
        },
        { action: { type: 'Delete' }, condition: { matchesSuffixes: DERIVED, withState: 'LIVE', age: DERIVED_AGE_DAYS } },
        // Uploads a sandbox abandoned half way.
        { action: { type: 'AbortIncompleteMultipartUpload' }, condition: { age: 1 } },
      ],
      // The lifecycle above is the only recovery window: no extra soft-delete copies.
      softDeletePolicy: { retentionDurationSeconds: 0 },
      forceDestroy: !s.protect,
      deletionPolicy: deletionPolicy(s),
    },
    { dependsOn: apis },
  );

  return { database, indexes: firestoreIndexes, stateBucket };
}
