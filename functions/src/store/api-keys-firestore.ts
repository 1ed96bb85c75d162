import type { CollectionReference, DocumentSnapshot, Firestore } from '@google-cloud/firestore';
import { z } from 'zod';
import { byCreation, type ApiKeyInfo, type ApiKeyRecord, type ApiKeyStore } from './api-key-store.js';

/*
 * Layout: <prefix>apiKeys/{id} = { id, userId, hash, createdAt, label (or null), revokedAt (or null) }.
 * A request finds its key by an equality query on `hash` (single-field index, automatic).
 * Listings filter by userId only and sort here, so no composite index is needed.
 */

const Doc = z.object({
  id: z.string(),
  userId: z.string(),
  hash: z.string(),
  createdAt: z.string(),
  label: z.string().nullable(),
  revokedAt: z.string().nullable(),
});

const read = (snap: DocumentSnapshot) => Doc.parse(snap.data());

export class FirestoreApiKeyStore implements ApiKeyStore {
  private readonly keys: CollectionReference;

  /** `prefix` starts the collection name (tests use a fresh one per store); close() terminates `db`. */
  constructor(
    private readonly db: Firestore,
    prefix = '',
  ) {
    if (prefix.includes('/')) throw new Error(`a collection prefix cannot contain "/": ${prefix}`);
    this.keys = db.collection(`${prefix}apiKeys`);
  }

  async create(record: ApiKeyRecord): Promise<void> {
    const doc: z.infer<typeof Doc> = {
      id: record.id,
      userId: record.userId,
      hash: record.hash,
      createdAt: record.createdAt,
      label: record.label ?? null,
      revokedAt: null,
    };
    await this.keys.doc(record.id).create(doc);
  }

  async findByHash(hash: string): Promise<ApiKeyRecord | undefined> {
    const snaps = await this.keys.where('hash', '==', hash).limit(1).get();
    const first = snaps.docs[0];
    if (first === undefined) return undefined;
    const doc = read(first);
    if (doc.revokedAt !== null) return undefined;
    return { id: doc.id, userId: doc.userId, hash: doc.hash, createdAt: doc.createdAt, ...(doc.label === null ? {} : { label: doc.label }) };
  }

  async list(userId?: string): Promise<ApiKeyInfo[]> {
    const snaps = await (userId === undefined ? this.keys : this.keys.where('userId', '==', userId)).get();
    return snaps.docs
      .map((snap) => {
        const { id, userId: owner, createdAt, label, revokedAt } = read(snap);
        return { id, userId: owner, createdAt, label, revokedAt };
      })
      .sort(byCreation);
  }

  async revoke(id: string): Promise<boolean> {
    const ref = this.keys.doc(id);
    return this.db.runTransaction(async (tx) => {
      const snap = await tx.get(ref);
      if (!snap.exists || read(snap).revokedAt !== null) return false;
      tx.update(ref, { revokedAt: new Date().toISOString() });
      return true;
    });
  }

  async close(): Promise<void> {
    await this.db.terminate();
  }
}
