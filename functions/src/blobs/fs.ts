import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { randomUUID } from 'node:crypto';
import { byteLimit } from '../byte-limit.js';
import { BlobTooLargeError, type BlobStore, type StoredBlob } from './blob-store.js';

const SAFE_KEY = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;

/** Blobs as files under one root; a put lands under a temporary name and is renamed when complete. */
export class FsBlobStore implements BlobStore {
  constructor(private readonly root: string) {}

  async put(key: string, body: Readable, maxBytes: number): Promise<{ bytes: number }> {
    const file = this.fileFor(key);
    await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    const partial = `${file}.${randomUUID()}.partial`;
    const limiter = byteLimit(maxBytes, () => new BlobTooLargeError(maxBytes));
    try {
      await pipeline(body, limiter.stream, createWriteStream(partial, { mode: 0o600 }));
      await rename(partial, file);
      return { bytes: limiter.bytes() };
    } catch (error) {
      await rm(partial, { force: true });
      throw error;
    }
  }

  async get(key: string): Promise<StoredBlob | undefined> {
    const file = this.fileFor(key);
    let bytes: number;
    try {
      bytes = (await stat(file)).size;
    } catch {
      return undefined;
    }
    // Blobs are written once, under a new name, and renamed into place: the size stays true.
    return { stream: createReadStream(file), bytes };
  }

  async delete(key: string): Promise<void> {
    await rm(this.fileFor(key), { force: true });
  }

  private fileFor(key: string): string {
    if (!SAFE_KEY.test(key) || key.split('/').some((part) => part === '..' || part === '.')) {
      throw new Error(`invalid blob key: ${key}`);
    }
    return path.join(this.root, key);
  }
}
