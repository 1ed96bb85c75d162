import { PassThrough, type Readable } from 'node:stream';
import type { ReadEntry } from 'tar';
import yazl from 'yazl';
import { type BlobStore, BlobTooLargeError, type StoredBlob } from '../blobs/blob-store.js';
import { byteLimit } from '../byte-limit.js';
import { derivedKeys } from './derived-keys.js';
import { entryTypeOf } from './entry-type.js';
import { EMPTY_MANIFEST, Manifest, manifestMaker, manifestOf } from './manifest.js';
import { type ArchiveLimits, ArchiveWriter, failIfStalled, readAllEntries } from './state-archive.js';
import { workspacePathOfEntry } from './workspace-path.js';

export type ExportFormat = 'tar.gz' | 'zip';

/**
 * A response streamed without a length is cut at 10 MB on Cloud Run functions, and one with a
 * length may be 32 MB (cloud.google.com/functions/quotas): a download is sent with its length (an
 * export is stored first to know it), and may be no larger than one response can carry.
 */
export const MAX_DOWNLOAD_BYTES = 32 * 1000 * 1000 - 64 * 1024;
/** Longer than any rewrite or export of a state within the limits takes. */
export const STALLED_MS = 5 * 60_000;

/** The one call of `make` for `key` in flight on this instance; later callers share it. */
function onceAtATime<T>(inFlight: Map<string, Promise<T>>, key: string, make: () => Promise<T>): Promise<T> {
  const pending = inFlight.get(key);
  if (pending !== undefined) return pending;
  const made = make();
  inFlight.set(key, made);
  const forget = () => inFlight.delete(key);
  made.then(forget, forget);
  return made;
}

/** A manifest of the most files a state may hold, with room to spare. */
const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;

/**
 * Manifests kept in memory, most recently used last, up to about this many bytes in all: a state
 * never changes under its key, so a kept manifest is never stale, and listing skips the blob store.
 */
const CACHED_MANIFEST_BYTES = 32 * 1024 * 1024;
/** Roughly what a manifest holds in memory: its strings, and an object's worth per entry. */
const sizeOf = (manifest: Manifest): number =>
  manifest.entries.reduce((bytes, entry) => bytes + 2 * (entry.path.length + (entry.target?.length ?? 0)) + 160, 0);

export interface StateLimits {
  /** Compressed, as stored. */
  maxStateBytes: number;
  /** What a state may expand to in a sandbox. */
  archive: ArchiveLimits;
}

/**
 * Conversation states in the blob store, each with what is derived from it: its manifest,
 * written as the state is stored, and its workspace's exports, made when first asked for.
 */
export class StateBlobs {
  private readonly cached = new Map<string, { manifest: Manifest; bytes: number }>();
  /** Exports being made on this instance: a second download of the same one waits for the first. */
  private readonly exporting = new Map<string, Promise<StoredBlob>>();
  /** Manifests being read on this instance: listings of one state at once read it once. */
  private readonly loading = new Map<string, Promise<Manifest>>();

  constructor(
    private readonly blobs: BlobStore,
    readonly limits: StateLimits,
  ) {}

  /**
   * Stores a state with its manifest. What is stored is the state as node-tar read it, written
   * anew, never the bytes as they came: the rules of what a state holds are applied to what
   * node-tar reads, and the next sandbox's GNU tar reads an archive written from that, so the two
   * cannot read different files from it (a pax header one of them ignores, a type one drops). A
   * state that is over the limits, not a gzipped tar or against the rules is not stored at all.
   */
  async put(key: string, body: Readable): Promise<Manifest> {
    const { maxStateBytes } = this.limits;
    const limited = byteLimit(maxStateBytes, () => new BlobTooLargeError(maxStateBytes));
    body.on('error', (error) => limited.stream.destroy(error));
    body.pipe(limited.stream);
    const writer = new ArchiveWriter();
    // Its error reaches the blob store's promise; a later one must not become an uncaught 'error' event.
    writer.output.on('error', () => undefined);
    const maker = manifestMaker();
    const read = readAllEntries(limited.stream, this.limits.archive, (entry) => {
      maker.take(entry);
      writer.add(entry);
    });
    read.then(
      () => writer.end(),
      (error: unknown) => writer.fail(error as Error),
    );
    const [readResult, storedResult] = await Promise.allSettled([read, this.blobs.put(key, writer.output, maxStateBytes)]);
    if (readResult.status === 'rejected') {
      if (storedResult.status === 'fulfilled') await this.blobs.delete(key);
      throw readResult.reason;
    }
    if (storedResult.status === 'rejected') throw storedResult.reason;
    const manifest = maker.manifest();
    // A state is kept with its manifest or not at all.
    await this.saveManifest(key, manifest).catch(async (error: unknown) => {
      await this.blobs.delete(key);
      throw error;
    });
    this.remember(key, manifest);
    return manifest;
  }

  open(key: string): Promise<StoredBlob | undefined> {
    return this.blobs.get(key);
  }

  /** The state's manifest: the one stored beside it, else (a state stored before manifests were) read from it and kept. */
  async manifest(key: string | null): Promise<Manifest> {
    if (key === null) return EMPTY_MANIFEST;
    const kept = this.cached.get(key);
    if (kept !== undefined) return this.remember(key, kept.manifest);
    return onceAtATime(this.loading, key, () => this.loadManifest(key));
  }

  private async loadManifest(key: string): Promise<Manifest> {
    const stored = await this.blobs.get(derivedKeys(key).manifest);
    if (stored !== undefined) return this.remember(key, Manifest.parse(JSON.parse((await textOf(stored.stream)) || 'null')));
    const state = await this.blobs.get(key);
    if (state === undefined) return EMPTY_MANIFEST;
    const manifest = await manifestOf(state.stream, this.limits.archive);
    await this.saveManifest(key, manifest);
    return this.remember(key, manifest);
  }

  /** The state's workspace alone as one archive, made once per state and kept until the state goes. */
  async export(key: string | null, format: ExportFormat): Promise<StoredBlob> {
    if (key === null) return this.emptyExport(format);
    const exportKey = derivedKeys(key)[format];
    const kept = await this.blobs.get(exportKey);
    if (kept !== undefined) return kept;
    const pending = this.exporting.get(exportKey);
    if (pending !== undefined) {
      // The first download's blob is its own stream: this one reads the stored export afresh.
      await pending;
      return (await this.blobs.get(exportKey)) ?? this.export(key, format);
    }
    return onceAtATime(this.exporting, exportKey, () => this.makeExport(key, exportKey, format));
  }

  private async makeExport(key: string, exportKey: string, format: ExportFormat): Promise<StoredBlob> {
    const state = await this.blobs.get(key);
    if (state === undefined) return this.emptyExport(format);
    const archive = failIfStalled(this.exportStream(state.stream, format), STALLED_MS, `the export of ${key}`);
    await this.blobs.put(exportKey, archive, MAX_DOWNLOAD_BYTES);
    const made = await this.blobs.get(exportKey);
    if (made === undefined) throw new Error(`the export ${exportKey} was stored but cannot be read`);
    return made;
  }

  async delete(key: string): Promise<void> {
    this.cached.delete(key);
    await Promise.all([key, ...Object.values(derivedKeys(key))].map((each) => this.blobs.delete(each)));
  }

  /** An export of an empty workspace, made on the spot: it is tiny. */
  private async emptyExport(format: ExportFormat): Promise<StoredBlob> {
    const chunks: Buffer[] = [];
    for await (const chunk of this.exportStream(undefined, format)) chunks.push(chunk as Buffer);
    const data = Buffer.concat(chunks);
    return { stream: PassThrough.from([data]), bytes: data.length };
  }

  private exportStream(state: Readable | undefined, format: ExportFormat): Readable {
    const workspaceOnly = (visit: (entry: ReadEntry) => void) => (entry: ReadEntry) => {
      if (workspacePathOfEntry(entry.path) === undefined) entry.resume();
      else visit(entry);
    };
    const read = (visit: (entry: ReadEntry) => void) =>
      state === undefined ? Promise.resolve() : readAllEntries(state, this.limits.archive, workspaceOnly(visit));
    if (format === 'tar.gz') {
      const writer = new ArchiveWriter();
      read((entry) => writer.add(entry)).then(
        () => writer.end(),
        (error: unknown) => writer.fail(error as Error),
      );
      return writer.output;
    }
    const zip = new yazl.ZipFile();
    const output = new PassThrough();
    zip.outputStream.pipe(output);
    read((entry) => addToZip(zip, entry)).then(
      () => zip.end(),
      (error: unknown) => output.destroy(error as Error),
    );
    return output;
  }

  private remember(key: string, manifest: Manifest): Manifest {
    this.cached.delete(key);
    this.cached.set(key, { manifest, bytes: sizeOf(manifest) });
    let bytes = 0;
    for (const kept of this.cached.values()) bytes += kept.bytes;
    for (const [oldest, kept] of this.cached) {
      if (bytes <= CACHED_MANIFEST_BYTES) break;
      this.cached.delete(oldest);
      bytes -= kept.bytes;
    }
    return manifest;
  }

  private async saveManifest(key: string, manifest: Manifest): Promise<void> {
    await this.blobs.put(derivedKeys(key).manifest, PassThrough.from([Buffer.from(JSON.stringify(manifest))]), MAX_MANIFEST_BYTES);
  }
}

/**
 * Zip has no hard links or special files: those are left out of a zip (a tar.gz keeps them);
 * a symlink is stored as zip tools store one, its target as the data under a link's mode. A name
 * with a backslash is left out too: zip tools read it as a separator (and yazl refuses one that
 * would then climb out).
 */
function addToZip(zip: yazl.ZipFile, entry: ReadEntry): void {
  const name = entry.path.endsWith('/') ? entry.path.slice(0, -1) : entry.path;
  if (name.includes('\\')) {
    entry.resume();
    return;
  }
  const mtime = zipTime(entry.mtime);
  const permissions = (entry.mode ?? 0o644) & 0o777;
  switch (entryTypeOf(entry)) {
    case 'directory':
      zip.addEmptyDirectory(name, { mtime, mode: 0o040000 | permissions });
      entry.resume();
      return;
    case 'file':
      // yazl reads what it is given in the order given: the tar's next entry waits for this one.
      zip.addReadStream(entry as unknown as NodeJS.ReadableStream, name, { mtime, mode: 0o100000 | permissions, size: entry.size });
      return;
    case 'symlink':
      zip.addBuffer(Buffer.from(entry.linkpath ?? ''), name, { mtime, mode: 0o120777, compress: false });
      entry.resume();
      return;
    default:
      entry.resume();
  }
}

/**
 * A time zip can hold: DOS times start in 1980 and yazl's Unix time field is 32 bits (to 2038);
 * yazl throws on one before 1970 as it writes the central directory, past any catch of ours.
 */
const ZIP_EARLIEST = Date.UTC(1980, 0, 1);
const ZIP_LATEST = Date.UTC(2038, 0, 19);
function zipTime(mtime: Date | undefined): Date {
  const at = mtime?.getTime();
  if (at === undefined || !Number.isFinite(at)) return new Date(ZIP_EARLIEST);
  return new Date(Math.min(ZIP_LATEST, Math.max(ZIP_EARLIEST, at)));
}

async function textOf(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
