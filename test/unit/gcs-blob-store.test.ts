import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { Storage } from '@google-cloud/storage';
import { PassThroughClient } from 'google-auth-library';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BlobTooLargeError } from '../../functions/src/blobs/blob-store.js';
import { GcsBlobStore } from '../../functions/src/blobs/gcs.js';
import { startFakeGcs, type FakeGcs } from '../fixtures/fake-gcs.js';

// What the shared contract (test/contract/blob-store.contract.test.ts) cannot see: the requests
// the GCS adapter makes and what it leaves open.

const BUCKET = 'clauderun-test';
const KEY = 'conversations/c1/state-t1.tar.gz';

describe('the GCS blob store', () => {
  let fake: FakeGcs;
  let storage: Storage;
  let uploads: Storage;
  let store: GcsBlobStore;
  beforeEach(async () => {
    fake = await startFakeGcs();
    const client = () => new Storage({ apiEndpoint: fake.url, projectId: 'test', authClient: new PassThroughClient() });
    storage = client();
    uploads = client();
    store = new GcsBlobStore(storage.bucket(BUCKET), uploads.bucket(BUCKET));
  });
  afterEach(async () => {
    await fake.close();
  });

  it('uploads by a resumable session in one PUT, as application/gzip', async () => {
    await store.put(KEY, Readable.from([randomBytes(1000)]), 10_000);
    const routes = fake.requests.map((r) => {
      const url = new URL(r.path, fake.url);
      return `${r.method} ${url.pathname} ${url.searchParams.get('uploadType')} ${url.searchParams.has('upload_id')}`;
    });
    expect(routes).toEqual([`POST /upload/storage/v1/b/${BUCKET}/o resumable false`, `PUT /upload/storage/v1/b/${BUCKET}/o resumable true`]);
    const [metadata] = await storage.bucket(BUCKET).file(KEY).getMetadata();
    expect(metadata).toMatchObject({ name: KEY, contentType: 'application/gzip', size: '1000' });
  });

  it("keeps the reads' and deletes' retries: a resumable upload turns its own client's off", async () => {
    const retries = storage.retryOptions.maxRetries;
    expect(retries).toBeGreaterThan(0);
    await store.put(KEY, Readable.from([randomBytes(1000)]), 10_000);
    await store.put('conversations/c1/state.tar.gz.manifest.json', Readable.from([Buffer.from('{}')]), 10_000);
    expect(storage.retryOptions.maxRetries).toBe(retries);
    // What the upload client shows is why it is a client of its own.
    expect(uploads.retryOptions.maxRetries).toBe(0);
    const [manifest] = await storage.bucket(BUCKET).file('conversations/c1/state.tar.gz.manifest.json').getMetadata();
    expect(manifest.contentType).toBe('application/json');
  });

  it('cancels the session of a put over the limit and leaves no request open', async () => {
    const source = Readable.from(
      (function* () {
        for (let i = 0; i < 40; i++) yield randomBytes(64 * 1024);
      })(),
    );
    await expect(store.put(KEY, source, 1024 * 1024)).rejects.toBeInstanceOf(BlobTooLargeError);
    expect(fake.requests.filter((r) => r.method === 'DELETE' && r.path.includes('upload_id='))).toHaveLength(1);
    await sleep(100);
    expect(fake.openUploads()).toBe(0);
    expect(fake.objects.size).toBe(0);
  });

  it('fails a download whose bytes do not match the stored checksum', async () => {
    await store.put(KEY, Readable.from([randomBytes(1000)]), 10_000);
    fake.objects.set(`${BUCKET}/${KEY}`, randomBytes(1000));
    // Small as it is, the whole response may be checked before get() returns; either way it fails.
    const read = async () => Readable.from((await store.get(KEY))?.stream ?? []).toArray();
    await expect(read()).rejects.toThrow(/did not match/);
  });
});
