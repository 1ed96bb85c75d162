import { type Readable, pipeline } from 'node:stream';
import { createGunzip, createGzip } from 'node:zlib';
import { Header, type HeaderData, Parser, Pax, type ReadEntry } from 'tar';
import { BlobTooLargeError } from '../blobs/blob-store.js';
import { byteLimit } from '../byte-limit.js';
import { AGENT_USER } from '../contract/sandbox-layout.js';

/**
 * A conversation's state archive (a gzipped tar of the agent's session and workspace, written by
 * the sandbox's runner) read and written on the API's side: as streams, entry by entry, never
 * extracted anywhere. The archive comes from a sandbox, whose agent may be hostile: every read
 * is held to the limits the sandbox itself has, and what tar would buffer is bounded.
 */

/** The sandbox's disk and its file count: a state that expands past them could not be restored either. */
export interface ArchiveLimits {
  maxExpandedBytes: number;
  maxEntries: number;
}

/** A state the API will not read: over the limits, or not a gzipped tar. */
export class StateArchiveError extends Error {
  override name = 'StateArchiveError';
  constructor(
    message: string,
    readonly kind: 'too_large' | 'unreadable',
  ) {
    super(message);
  }
}

/**
 * Long names and pax headers are read whole into memory: one past this is skipped unread (tar's
 * parser then uses the entry's own short header), so a small archive cannot make it hold GBs.
 */
const MAX_META_BYTES = 64 * 1024;

/** What a visitor does with an entry: it consumes or resumes the entry itself, and may end the read there. */
export type Visit = 'next' | 'stop';

export interface EntryRead {
  /** Settles when the archive is read to its end, or to the end of the entry a visit stopped at. */
  done: Promise<void>;
  /** Stops reading (a client went away); `done` then settles as it is. */
  cancel(): void;
}

/**
 * Reads a state archive's entries in order, handing each to `visit` as it comes; an entry's data
 * flows only as fast as the visitor takes it. Fails with StateArchiveError past the limits or on
 * a damaged archive.
 */
export function readEntries(archive: Readable, limits: ArchiveLimits, visit: (entry: ReadEntry) => Visit): EntryRead {
  let finish: (error?: Error) => void = () => undefined;
  let cancel = (): undefined => undefined;
  const done = new Promise<void>((resolve, reject) => {
    let settled = false;
    const parser = new Parser({ strict: true, maxMetaEntrySize: MAX_META_BYTES });
    const limiter = byteLimit(
      limits.maxExpandedBytes,
      () => new StateArchiveError(`the state expands to more than ${limits.maxExpandedBytes} bytes, the sandbox's disk`, 'too_large'),
    );
    const expanded = pipeline(archive, createGunzip(), limiter.stream, (error) => {
      // Refusals of what was read (ours, or the source's own limit) go as they are.
      if (error)
        finish(
          error instanceof StateArchiveError || error instanceof BlobTooLargeError
            ? error
            : new StateArchiveError(`the state is not a gzipped tar: ${error.message}`, 'unreadable'),
        );
    });
    finish = (error?: Error) => {
      if (settled) return;
      settled = true;
      expanded.destroy();
      archive.destroy();
      if (error) reject(error);
      else resolve();
    };
    cancel = () => {
      finish();
    };
    let entries = 0;
    const counted = (): boolean => {
      entries += 1;
      if (entries <= limits.maxEntries) return true;
      finish(new StateArchiveError(`the state holds more than ${limits.maxEntries} files, the sandbox's limit`, 'too_large'));
      return false;
    };
    parser.on('entry', (entry: ReadEntry) => {
      if (settled || !counted()) {
        entry.resume();
        return;
      }
      let next: Visit;
      try {
        next = visit(entry);
      } catch (error) {
        // A visitor that refuses the entry (or fails on it) ends the read with its error.
        entry.resume();
        finish(error instanceof Error ? error : new Error(String(error)));
        return;
      }
      if (next === 'stop') entry.once('end', () => finish());
    });
    // What node-tar skips, GNU tar may not: an oversized header it would apply, a type it would
    // unpack as a file. The two would read different files from the same state.
    parser.on('ignoredEntry', (entry: ReadEntry) => {
      entry.resume();
      const what = entry.meta
        ? `a header of ${entry.size} bytes, over ${MAX_META_BYTES}`
        : `an entry of a type tar does not know (${JSON.stringify(entry.path.slice(0, 200))})`;
      finish(new StateArchiveError(`the state holds ${what}`, 'unreadable'));
    });
    parser.on('error', (error: Error) => finish(new StateArchiveError(`the state is not a readable tar: ${error.message}`, 'unreadable')));
    parser.on('end', () => finish());
    expanded.on('data', (chunk: Buffer) => {
      if (!parser.write(chunk)) expanded.pause();
    });
    parser.on('drain', () => expanded.resume());
    expanded.on('end', () => parser.end());
  });
  return { done, cancel: () => cancel() };
}

/** Reads every entry; `visit` must consume or resume each. */
export const readAllEntries = (archive: Readable, limits: ArchiveLimits, visit: (entry: ReadEntry) => void): Promise<void> =>
  readEntries(archive, limits, (entry) => {
    visit(entry);
    return 'next';
  }).done;

/**
 * Fails `stream` when it has not closed within `ms`: an archive being written that stalls (an
 * archiver's bug) then fails its put, which removes what it wrote, instead of holding its place.
 */
export function failIfStalled<T extends Readable>(stream: T, ms: number, what: string): T {
  const timer = setTimeout(() => stream.destroy(new Error(`${what} took more than ${ms} ms`)), ms);
  stream.once('close', () => clearTimeout(timer));
  return stream;
}

/** What a tar header says of an entry. */
type EntryFields = HeaderData & { path: string; size: number };

const fieldsOf = (entry: ReadEntry): EntryFields => ({
  path: entry.path,
  type: entry.type,
  mode: entry.mode,
  uid: entry.uid,
  gid: entry.gid,
  uname: entry.uname,
  gname: entry.gname,
  size: entry.size,
  mtime: entry.mtime,
  linkpath: entry.linkpath,
});

/**
 * A new gzipped tar, written one entry after the other with node-tar's own header encoding: an
 * entry read from another archive is copied when its turn comes, as fast as the output takes it.
 * (node-tar's Pack, given the entries of a parsed archive, stalls after a few dozen of them.)
 */
export class ArchiveWriter {
  private readonly gzip = createGzip();
  private chain: Promise<void> = Promise.resolve();
  readonly output: Readable = this.gzip;

  /** Copies an entry of an archive being read; the reader must hand them over in order. */
  add(entry: ReadEntry): void {
    this.inTurn(async () => {
      await this.header(fieldsOf(entry));
      for await (const chunk of entry as AsyncIterable<Buffer>) await this.write(chunk);
      await this.padding(entry.size);
    });
  }

  /** Adds a file given whole, owned by the agent as the sandbox's own files are. */
  addFile(name: string, data: Buffer, mtime: Date): void {
    const fields: EntryFields = {
      path: name,
      type: 'File',
      mode: 0o644,
      size: data.length,
      mtime,
      uid: AGENT_USER.uid,
      gid: AGENT_USER.gid,
      uname: AGENT_USER.name,
      gname: AGENT_USER.name,
    };
    this.inTurn(async () => {
      await this.header(fields);
      await this.write(data);
      await this.padding(data.length);
    });
  }

  /** Ends the archive: its two zero blocks, then the end of the gzip stream. */
  end(): void {
    this.inTurn(async () => {
      await this.write(Buffer.alloc(1024));
      this.gzip.end();
    });
  }

  fail(error: Error): void {
    this.gzip.destroy(error);
  }

  private inTurn(step: () => Promise<void>): void {
    this.chain = this.chain.then(async () => {
      if (!this.gzip.destroyed) await step();
    });
    this.chain.catch((error: unknown) => this.fail(error instanceof Error ? error : new Error(String(error))));
  }

  private async header(fields: EntryFields): Promise<void> {
    const header = new Header(fields);
    // A name or target too long for ustar goes in a pax header before it, as node-tar writes one.
    if (header.encode()) await this.write(new Pax(fields).encode());
    if (header.block === undefined) throw new Error(`tar could not encode a header for ${fields.path}`);
    await this.write(header.block);
  }

  private padding(size: number): Promise<void> {
    const rest = (512 - (size % 512)) % 512;
    return rest === 0 ? Promise.resolve() : this.write(Buffer.alloc(rest));
  }

  /** Writes, waiting while the output is full; a destroyed output ends the wait with its error. */
  private write(chunk: Buffer): Promise<void> {
    if (this.gzip.destroyed) return Promise.reject(new Error('the archive was abandoned'));
    if (this.gzip.write(chunk)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = () => {
        this.gzip.off('drain', done);
        this.gzip.off('close', closed);
        resolve();
      };
      const closed = () => {
        this.gzip.off('drain', done);
        reject(new Error('the archive was abandoned'));
      };
      this.gzip.once('drain', done);
      this.gzip.once('close', closed);
    });
  }
}
