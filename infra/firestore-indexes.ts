import { readFileSync } from 'node:fs';
import { z } from 'zod';

/**
 * The composite indexes the Firestore store's queries need, as the store declares them in
 * firestore.indexes.json at the repository root (the format `firebase deploy` reads). Read when
 * the program runs, so the file the store is tested against is the file that is deployed.
 */

const IndexField = z.union([
  z.object({ fieldPath: z.string().min(1), order: z.enum(['ASCENDING', 'DESCENDING']) }).strict(),
  z.object({ fieldPath: z.string().min(1), arrayConfig: z.literal('CONTAINS') }).strict(),
]);

const IndexDeclaration = z
  .object({
    collectionGroup: z.string().min(1),
    queryScope: z.enum(['COLLECTION', 'COLLECTION_GROUP']).default('COLLECTION'),
    fields: z.array(IndexField).min(2, 'a composite index has at least two fields'),
  })
  .strip();

const IndexesFile = z.object({ indexes: z.array(IndexDeclaration), fieldOverrides: z.array(z.unknown()).optional() }).strip();

export type FirestoreIndex = z.infer<typeof IndexDeclaration>;

export function parseFirestoreIndexes(json: string, source: string): FirestoreIndex[] {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (error) {
    throw new Error(`${source}: not JSON (${(error as Error).message})`);
  }
  const parsed = IndexesFile.safeParse(value);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(file)'}: ${issue.message}`);
    throw new Error(`${source}: not a Firestore indexes file: ${problems.join('; ')}`);
  }
  const seen = new Set<string>();
  for (const index of parsed.data.indexes) {
    const key = indexKey(index);
    if (seen.has(key)) throw new Error(`${source}: index ${key} is declared twice`);
    seen.add(key);
  }
  return parsed.data.indexes;
}

export function readFirestoreIndexes(file: string): FirestoreIndex[] {
  let json: string;
  try {
    json = readFileSync(file, 'utf8');
  } catch {
    throw new Error(`${file} not found: the Firestore store declares the composite indexes its queries need there`);
  }
  return parseFirestoreIndexes(json, file);
}

/** A stable, readable identity: collection, scope and fields (the resource's logical name). */
export function indexKey(index: FirestoreIndex): string {
  const fields = index.fields.map((f) => `${f.fieldPath}-${'order' in f ? (f.order === 'ASCENDING' ? 'asc' : 'desc') : 'contains'}`);
  const scope = index.queryScope === 'COLLECTION_GROUP' ? '-group' : '';
  return `${index.collectionGroup}${scope}-${fields.join('-')}`.replace(/[^A-Za-z0-9-]/g, '_');
}
