import * as gcp from '@pulumi/gcp';
import type * as pulumi from '@pulumi/pulumi';
import { deletionPolicy, type Names, type Settings } from './config.js';
import { indexKey, type FirestoreIndex } from './firestore-indexes.js';

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
