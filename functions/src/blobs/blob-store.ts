import type { Readable } from 'node:stream';

export class BlobTooLargeError extends Error {
  override name = 'BlobTooLargeError';
  constructor(readonly limitBytes: number) {
    super(`blob exceeds the limit of ${limitBytes} bytes`);
  }
}

export interface StoredBlob {
  stream: Readable;
  bytes: number;
}

/** Opaque binary objects (state archives), streamed in and out, never held whole in memory. */
export interface BlobStore {
  /** Streams `body` into `key`; rejects with BlobTooLargeError (storing nothing) past `maxBytes`. */
  put(key: string, body: Readable, maxBytes: number): Promise<{ bytes: number }>;
  /**
   * A stream of the blob with its size, or undefined when there is none. The size goes out as a
   * Content-Length: a Cloud Run function's response streamed without one is cut at 10 MB
   * (cloud.google.com/functions/quotas), far under a state's limit.
   */
  get(key: string): Promise<StoredBlob | undefined>;
  delete(key: string): Promise<void>;
}
