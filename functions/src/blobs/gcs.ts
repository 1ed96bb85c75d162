import type { Bucket, File } from '@google-cloud/storage';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { byteLimit } from '../byte-limit.js';
import { BlobTooLargeError, type BlobStore, type StoredBlob } from './blob-store.js';

/** What an object holds, by its name's end: states and their exports are archives, manifests JSON. */
function contentTypeOf(key: string): string {
  if (key.endsWith('.json')) return 'application/json';
  if (key.endsWith('.zip')) return 'application/zip';
  return 'application/gzip';
}

/**
 * Blobs as objects in one Cloud Storage bucket, through the official client. Keys are object
 * names (`conversations/<id>/state-<turnId>.tar.gz`). Build it with e.g.
 * `new GcsBlobStore(new Storage().bucket(name))`.
 *
 * Uploads use the resumable protocol, in its single-request form (no chunkSize): the body streams
 * through one PUT, holding one chunk at a time, and GCS makes the object only when that request's
 * body ends, so an upload stopped part-way (too large, the source failed) never becomes an object
 * and a previous object under the key stays. The simple (multipart) upload streams too, but the
 * client has no way to stop it: it writes the closing boundary only when the body ends and sets no
 * timeout, so a put stopped part-way would leave that request open for good.
 * The resumable session is created first, so its URI is known from the start and a failed put
 * can cancel it (DELETE on the session URI); that also ends the client's PUT, which otherwise
 * stays open waiting for bytes that never come (the client does not abort it when its write
 * stream is destroyed without an error, which is what a failed pipeline does to it).
 */
export class GcsBlobStore implements BlobStore {
  /**
   * `uploads` is the same bucket through a Storage client used for nothing else: a resumable
   * upload without a precondition turns its client's retries off for every later call.
   */
  constructor(
    private readonly bucket: Bucket,
    private readonly uploads: Bucket,
  ) {}

  async put(key: string, body: Readable, maxBytes: number): Promise<{ bytes: number }> {
    const file = this.uploads.file(key);
    const contentType = contentTypeOf(key);
    const [sessionUri] = await file.createResumableUpload({ metadata: { contentType } });
    const limiter = byteLimit(maxBytes, () => new BlobTooLargeError(maxBytes));
    // offset 0 with the session URI: the client starts sending at once instead of first asking
    // the new, empty session how much it holds. The content type went with the session; given
    // here too, it spares the client guessing one from the name. validation 'crc32c': the client
    // checksums what it sends against the stored object's (and deletes the object on a mismatch).
    const upload = file.createWriteStream({ uri: sessionUri, offset: 0, resumable: true, contentType, validation: 'crc32c' });
    try {
      await pipeline(body, limiter.stream, upload);
      return { bytes: limiter.bytes() };
    } catch (error) {
      await this.discard(file, sessionUri);
      throw error;
    }
  }

  /**
   * One request whose first event tells: `readable` (data or an empty object) or an error, a
   * 404 from the download itself. Asking `file.exists()` first would cost a request and still
   * race a delete between the two; here the answer and the bytes come from the same response.
   */
  async get(key: string): Promise<StoredBlob | undefined> {
    const stream = this.bucket.file(key).createReadStream();
    let bytes: number | undefined;
    // The download's own headers give its length: no second request, no race with a delete.
    stream.once('response', (response: { headers?: Record<string, string | string[] | undefined> }) => (bytes = lengthOf(response.headers ?? {})));
    try {
      await firstReadable(stream);
      if (bytes === undefined) throw new Error(`Cloud Storage sent ${key} without its length`);
      return { stream, bytes };
    } catch (error) {
      stream.destroy();
      if (statusOf(error) === 404) return undefined;
      throw error;
    }
  }

  async delete(key: string): Promise<void> {
    await this.bucket.file(key).delete({ ignoreNotFound: true });
  }

  /** Leaves nothing of a failed put behind; errors here must not hide the put's own error. */
  private async discard(file: File, sessionUri: string): Promise<void> {
    // GCS answers a cancelled session with 499, so every status counts as done.
    await this.bucket.storage.authClient.request({ method: 'DELETE', url: sessionUri, validateStatus: () => true }).catch(() => undefined);
    // The pipeline fails before the body's end reaches the client, so the session cannot have
    // made an object; should one exist anyway (metadata came back), delete that exact generation,
    // never a newer object another put stored under the key.
    const generation = file.metadata.generation;
    if (generation !== undefined) await file.delete({ ifGenerationMatch: generation, ignoreNotFound: true }).catch(() => undefined);
  }
}

function firstReadable(stream: Readable): Promise<void> {
  return new Promise((resolve, reject) => {
    const onReadable = () => {
      stream.off('readable', onReadable);
      stream.off('error', reject);
      // An error can come in the same tick as the first data, before the caller attaches its own
      // listener; it must not become an uncaught exception. It is not lost either: the stream is
      // left errored, which pipeline() and for-await report to whoever reads it.
      stream.on('error', () => undefined);
      resolve();
    };
    stream.on('readable', onReadable);
    stream.once('error', reject);
  });
}

/**
 * The stored object's size. Objects are stored without a content encoding, so they are served as
 * stored, never transcoded (cloud.google.com/storage/docs/transcoding): the stored length is the
 * length of the bytes that come.
 */
function lengthOf(headers: Record<string, string | string[] | undefined>): number | undefined {
  const encoding = headers['x-goog-stored-content-encoding'];
  if (encoding !== undefined && encoding !== 'identity') return undefined;
  const n = Number(headers['x-goog-stored-content-length'] ?? headers['content-length']);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

/** The HTTP status of a client error (ApiError and gaxios errors both carry it as `code`). */
function statusOf(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null || !('code' in error)) return undefined;
  return typeof error.code === 'number' ? error.code : undefined;
}
