import type { Readable } from 'node:stream';

export class BlobTooLargeError extends Error {
  override name = 'BlobTooLargeError';
  constructor(readonly limitBytes: number) {
    super(`blob exceeds the limit of ${limitBytes} bytes`);
  }
}

/** Opaque binary objects (state archives), streamed in and out, never held whole in memory. */
export interface BlobStore {
  /** Streams `body` into `key`; rejects with BlobTooLargeError (storing nothing) past `maxBytes`. */
  put(key: string, body: Readable, maxBytes: number): Promise<{ bytes: number }>;
  /** A stream of the blob, or undefined when there is none. */
  get(key: string): Promise<Readable | undefined>;
  delete(key: string): Promise<void>;
}
