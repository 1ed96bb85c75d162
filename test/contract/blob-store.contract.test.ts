import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Storage } from '@google-cloud/storage';
import { PassThroughClient } from 'google-auth-library';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BlobTooLargeError, type BlobStore, type StoredBlob } from '../../functions/src/blobs/blob-store.js';
import { FsBlobStore } from '../../functions/src/blobs/fs.js';
import { GcsBlobStore } from '../../functions/src/blobs/gcs.js';
import { startFakeGcs } from '../fixtures/fake-gcs.js';

/** One BlobStore adapter under test, with a view of its backend the port does not give. */
interface Subject {
  store: BlobStore;
  /** Every name the backend holds, temporary ones included: what a failed put could leave. */
  names(): Promise<string[]>;
  /** Bytes the backend itself keeps in this process (the fake GCS holds objects in memory). */
  heldInProcess(): number;
  close(): Promise<void>;
}

const BUCKET = 'clauderun-test';
const KiB = 1024;
const MiB = 1024 * KiB;
const CHUNK = 64 * KiB;
const KEY = 'conversations/c1/state-t1.tar.gz';

const adapters: Array<{ name: string; open(): Promise<Subject> }> = [
  {
    name: 'FsBlobStore',
    async open() {
      const root = await mkdtemp(path.join(tmpdir(), 'clauderun-blobs-'));
      return {
        store: new FsBlobStore(root),
        names: async () =>
          (await readdir(root, { recursive: true, withFileTypes: true }))
            .filter((e) => e.isFile())
            .map((e) => path.relative(root, path.join(e.parentPath, e.name))),
        heldInProcess: () => 0,
        close: () => rm(root, { recursive: true, force: true }),
      };
    },
  },
  {
    name: 'GcsBlobStore',
    async open() {
      const fake = await startFakeGcs();
      // Constructor options, not STORAGE_EMULATOR_HOST: nothing global to set and undo.
      const storage = () => new Storage({ apiEndpoint: fake.url, projectId: 'test', authClient: new PassThroughClient() });
      return {
        store: new GcsBlobStore(storage().bucket(BUCKET), storage().bucket(BUCKET)),
        names: async () => [...fake.objects.keys()].map((k) => k.slice(BUCKET.length + 1)),
        heldInProcess: () => fake.heldBytes(),
        close: () => fake.close(),
      };
    },
  },
];

describe.each(adapters)('the BlobStore contract: $name', (adapter) => {
  let subject: Subject;
  beforeEach(async () => {
    subject = await adapter.open();
  });
  afterEach(async () => {
    await subject.close();
  });

  it('gives back the bytes a put streamed in', async () => {
    const data = randomBytes(3 * MiB + 12_345);
    expect(await subject.store.put(KEY, chunked(data), 25 * MiB)).toEqual({ bytes: data.length });
    const blob = await subject.store.get(KEY);
    expect(blob?.bytes).toBe(data.length);
    expect((await readAll(blob)).equals(data)).toBe(true);
  });

  it('answers undefined for a key it does not hold', async () => {
    expect(await subject.store.get('conversations/nobody/state-none.tar.gz')).toBeUndefined();
  });

  it('deletes idempotently; a deleted key reads as undefined', async () => {
    await subject.store.delete(KEY);
    await subject.store.put(KEY, chunked(randomBytes(100 * KiB)), MiB);
    await subject.store.delete(KEY);
    await subject.store.delete(KEY);
    expect(await subject.store.get(KEY)).toBeUndefined();
    expect(await subject.names()).toEqual([]);
  });

  it('rejects a put over maxBytes with BlobTooLargeError and stores nothing of it', async () => {
    const put = subject.store.put(KEY, chunked(randomBytes(3 * MiB)), MiB);
    await expect(put).rejects.toBeInstanceOf(BlobTooLargeError);
    await expect(put).rejects.toMatchObject({ limitBytes: MiB });
    expect(await subject.store.get(KEY)).toBeUndefined();
    expect(await subject.names()).toEqual([]);
  });

  it('keeps the previous blob when a put over maxBytes fails', async () => {
    const previous = randomBytes(200 * KiB);
    await subject.store.put(KEY, chunked(previous), MiB);
    await expect(subject.store.put(KEY, chunked(randomBytes(2 * MiB)), MiB)).rejects.toBeInstanceOf(BlobTooLargeError);
    expect((await readAll(await subject.store.get(KEY))).equals(previous)).toBe(true);
    expect(await subject.names()).toEqual([KEY]);
  });

  it('stores nothing when the source fails part-way', async () => {
    const source = Readable.from(
      (function* () {
        yield randomBytes(CHUNK);
        throw new Error('client went away');
      })(),
    );
    await expect(subject.store.put(KEY, source, MiB)).rejects.toThrow('client went away');
    expect(await subject.names()).toEqual([]);
  });

  it('replaces a blob on a second put of the same key', async () => {
    await subject.store.put(KEY, chunked(randomBytes(300 * KiB)), MiB);
    const second = randomBytes(500 * KiB);
    expect(await subject.store.put(KEY, chunked(second), MiB)).toEqual({ bytes: second.length });
    expect((await readAll(await subject.store.get(KEY))).equals(second)).toBe(true);
    expect(await subject.names()).toEqual([KEY]);
  });

  it('streams a put: memory does not grow with the body', async () => {
    const probe = await probePutMemory(subject.store, () => subject.heldInProcess());
    expect(probe.bytes).toBe(20 * MiB);
    expect(probe.grownBytes).toBeLessThan(MEMORY_LIMIT);
    let read = 0;
    for await (const chunk of (await subject.store.get('probe/state.tar.gz'))?.stream ?? []) read += (chunk as Buffer).length;
    expect(read).toBe(20 * MiB);
  });
});

describe('the memory probe', () => {
  it('catches a store that holds the body before writing it', async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'clauderun-blobs-'));
    try {
      const probe = await probePutMemory(new BufferingStore(new FsBlobStore(root)), () => 0);
      expect(probe.grownBytes).toBeGreaterThan(MEMORY_LIMIT);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

/** A body of 20 MiB must not cost anything near 20 MiB; what a streaming put holds is its buffers. */
const MEMORY_LIMIT = 10 * MiB;

/**
 * Puts 20 MiB in fresh 64 KiB chunks (maxBytes 25 MiB) and pauses the source at 16 MiB: with
 * the pipeline settled, a forced GC and a look at heapUsed + arrayBuffers show what the put
 * holds at that moment, against a baseline taken the same way. A store that collects the body
 * would hold about 16 MiB there. Sampling without a forced GC measured garbage as much as
 * anything, so the probe collects first; bytes the backend itself keeps in this process (the
 * fake GCS stores in memory) are subtracted.
 */
async function probePutMemory(store: BlobStore, heldByBackend: () => number): Promise<{ bytes: number; grownBytes: number }> {
  const total = 20 * MiB;
  const pauseAt = 16 * MiB;
  let produced = 0;
  let paused = false;
  let reachedPause!: () => void;
  const atPause = new Promise<void>((resolve) => (reachedPause = resolve));
  const next = () => {
    if (produced >= total) return null;
    // A new buffer each time: a store that kept the chunks would keep all their bytes.
    const chunk = Buffer.alloc(CHUNK, (produced / CHUNK) % 251);
    produced += chunk.length;
    return chunk;
  };
  const source = new Readable({
    read() {
      if (produced === pauseAt && !paused) {
        paused = true;
        reachedPause();
        return; // read() is not called again until the next push
      }
      this.push(next());
    },
  });
  const gc = collector();
  const used = () => {
    gc();
    gc();
    const memory = process.memoryUsage();
    return memory.heapUsed + memory.arrayBuffers - heldByBackend();
  };
  const before = used();
  const put = store.put('probe/state.tar.gz', source, 25 * MiB);
  await Promise.race([atPause, put]);
  expect(paused).toBe(true);
  await sleep(300); // let the pipeline drain what it will into the backend
  const grownBytes = used() - before;
  source.push(next());
  const { bytes } = await put;
  return { bytes, grownBytes };
}

/** The V8 collector; vitest does not start the worker with --expose-gc, so turn it on here. */
function collector(): () => void {
  setFlagsFromString('--expose-gc');
  const gc: unknown = runInNewContext('gc');
  if (typeof gc !== 'function') throw new Error('cannot reach the garbage collector');
  return gc as () => void;
}

/** A deliberately wrong store for the probe's own test: it holds the whole body, then writes. */
class BufferingStore implements BlobStore {
  constructor(private readonly inner: BlobStore) {}
  async put(key: string, body: Readable, maxBytes: number): Promise<{ bytes: number }> {
    const chunks: Buffer[] = [];
    for await (const chunk of body) chunks.push(chunk as Buffer);
    return this.inner.put(key, Readable.from(chunks), maxBytes);
  }
  get(key: string) {
    return this.inner.get(key);
  }
  delete(key: string) {
    return this.inner.delete(key);
  }
}

function chunked(data: Buffer, size = CHUNK): Readable {
  return Readable.from(
    (function* () {
      for (let at = 0; at < data.length; at += size) yield data.subarray(at, at + size);
    })(),
  );
}

async function readAll(blob: StoredBlob | undefined): Promise<Buffer> {
  if (blob === undefined) throw new Error('no blob');
  const chunks: Buffer[] = [];
  for await (const chunk of blob.stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
