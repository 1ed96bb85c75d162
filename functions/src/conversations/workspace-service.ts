import { randomUUID } from 'node:crypto';
import { PassThrough, type Readable } from 'node:stream';
import { BlobTooLargeError, type StoredBlob } from '../blobs/blob-store.js';
import type { WorkspaceFile, WorkspaceListing } from '../contract/api.js';
import type { Conversation } from '../domain/conversation.js';
import { isFinal } from '../domain/turn-state.js';
import { entryTypeOf } from '../workspace/entry-type.js';
import type { Manifest } from '../workspace/manifest.js';
import { failIfStalled, readEntries } from '../workspace/state-archive.js';
import { type ExportFormat, MAX_DOWNLOAD_BYTES, STALLED_MS } from '../workspace/state-blobs.js';
import { changeConflict, changedState, type WorkspaceChange } from '../workspace/workspace-change.js';
import { entryNameOf, pathRuleBroken } from '../workspace/workspace-path.js';
import { refusal, ServiceError } from './errors.js';
import { Gate } from './gate.js';
import { ownConversation } from './owned.js';
import { asServiceError, storeState } from './stored-state.js';
import type { TurnLifecycle } from './turn-lifecycle.js';

/** The most entries one listing gives; past it the listing says it is truncated. */
export const MAX_LISTED_FILES = 10_000;
/** A change made from a state that another change replaced meanwhile is made again from the new one, this often. */
const CHANGE_ATTEMPTS = 3;
/**
 * States rewritten (changes) and, apart, states exported at once on an instance: each is gunzip,
 * tar and gzip of up to a whole state, CPU-bound, beside every other request the instance serves.
 * Apart, so that a slow export never holds up a change.
 */
const REWRITES_AT_ONCE = 2;
const EXPORTS_AT_ONCE = 2;

/** A workspace file being read: its entry, and its bytes as they are unpacked. */
export interface OpenedFile {
  file: WorkspaceFile;
  stream: Readable;
}

/**
 * A conversation's workspace files, read from and written to its stored state: no sandbox runs.
 * A change makes a new state that takes the old one's place in one compare-and-set, or not at all.
 */
export class WorkspaceService {
  /** The change of each conversation being made on this instance: the next waits for it rather than racing it. */
  private readonly changing = new Map<string, Promise<unknown>>();
  private readonly rewrites = new Gate(REWRITES_AT_ONCE);
  private readonly exports = new Gate(EXPORTS_AT_ONCE);

  constructor(private readonly lifecycle: TurnLifecycle) {}

  private get deps() {
    return this.lifecycle.deps;
  }

  async list(userId: string, conversationId: string): Promise<WorkspaceListing> {
    const conversation = await ownConversation(this.deps.store, userId, conversationId);
    const files = (await this.manifestOf(conversation)).entries.filter((entry) => entry.type !== 'directory');
    return { files: files.slice(0, MAX_LISTED_FILES), truncated: files.length > MAX_LISTED_FILES };
  }

  /** A regular file of the workspace; found by the manifest, then unpacked from the state as it is read. */
  async open(userId: string, conversationId: string, rawPath: string): Promise<OpenedFile> {
    const path = checkedPath(rawPath);
    const conversation = await ownConversation(this.deps.store, userId, conversationId);
    const file = (await this.manifestOf(conversation)).entries.find((entry) => entry.path === path);
    const absent = () => new ServiceError('not_found', `${path} is not in the workspace`);
    if (file === undefined) throw absent();
    if (file.type !== 'file') {
      const to = file.target === undefined ? '' : ` to ${file.target}`;
      throw new ServiceError('not_found', `${path} is a ${file.type}${to}, not a file: only files are downloaded (links are never followed)`);
    }
    if (file.size > MAX_DOWNLOAD_BYTES) {
      throw new ServiceError(
        'too_large',
        `${path} is ${file.size} bytes, more than one response may carry (${MAX_DOWNLOAD_BYTES}): ask the agent to split or compress it`,
      );
    }
    const state = conversation.stateKey === null ? undefined : await this.deps.states.open(conversation.stateKey);
    if (state === undefined) throw absent();
    const stream = await this.unpackOne(state, entryNameOf(path));
    if (stream === undefined) throw absent();
    return { file, stream };
  }

  async put(userId: string, conversationId: string, rawPath: string, data: Buffer): Promise<void> {
    await this.change(userId, conversationId, { kind: 'put', path: checkedPath(rawPath), data, at: new Date() });
  }

  async remove(userId: string, conversationId: string, rawPath: string): Promise<void> {
    await this.change(userId, conversationId, { kind: 'delete', path: checkedPath(rawPath) });
  }

  /** The workspace as one archive, with its length (a response is sent with one). */
  async archive(userId: string, conversationId: string, format: ExportFormat): Promise<{ conversation: Conversation; archive: StoredBlob }> {
    const conversation = await ownConversation(this.deps.store, userId, conversationId);
    try {
      return { conversation, archive: await this.exports.run(() => this.deps.states.export(conversation.stateKey, format)) };
    } catch (error) {
      if (error instanceof BlobTooLargeError) {
        throw new ServiceError('too_large', `the workspace's archive is more than ${error.limitBytes} bytes, more than one response may carry`);
      }
      throw asServiceError(error);
    }
  }

  private async manifestOf(conversation: Conversation): Promise<Manifest> {
    try {
      return await this.deps.states.manifest(conversation.stateKey);
    } catch (error) {
      throw asServiceError(error);
    }
  }

  /** The bytes of one entry, read from the state up to it and no further; undefined when it is not there. */
  private unpackOne(state: StoredBlob, entryName: string): Promise<Readable | undefined> {
    return new Promise((resolve, reject) => {
      let found: PassThrough | undefined;
      const read = readEntries(state.stream, this.deps.states.limits.archive, (entry) => {
        if (found !== undefined || entry.path !== entryName || entryTypeOf(entry) !== 'file') {
          entry.resume();
          return 'next';
        }
        found = new PassThrough();
        // A client that goes away stops the read.
        found.once('close', () => read.cancel());
        entry.pipe(found);
        resolve(found);
        return 'stop';
      });
      read.done.then(
        () => {
          if (found === undefined) resolve(undefined);
        },
        (error: unknown) => {
          if (found === undefined) reject(asServiceError(error));
          else found.destroy(error as Error);
        },
      );
    });
  }

  /**
   * Changes of one conversation on one instance are made one after the other; across instances
   * the compare-and-set decides, and a change that lost is made again from the state that won.
   */
  private async change(userId: string, conversationId: string, change: WorkspaceChange): Promise<void> {
    await ownConversation(this.deps.store, userId, conversationId);
    const admitted = await this.deps.store.admitFileChange(userId, this.deps.quota, new Date());
    if (!admitted.admitted) throw refusal(admitted.limitHit);
    const before = this.changing.get(conversationId) ?? Promise.resolve();
    const made = before.catch(() => undefined).then(() => this.rewrites.run(() => this.makeChange(userId, conversationId, change)));
    this.changing.set(conversationId, made);
    const forget = () => {
      if (this.changing.get(conversationId) === made) this.changing.delete(conversationId);
    };
    made.then(forget, forget);
    return made;
  }

  private async makeChange(userId: string, conversationId: string, change: WorkspaceChange): Promise<void> {
    const { store, states } = this.deps;
    for (let attempt = 1; attempt <= CHANGE_ATTEMPTS; attempt++) {
      const conversation = await ownConversation(store, userId, conversationId);
      // Refused before any work; the compare-and-set below refuses a turn that starts meanwhile.
      await this.refuseWhileRunning(conversation);
      const conflict = changeConflict(await this.manifestOf(conversation), change);
      if (conflict !== undefined) throw new ServiceError(conflict.status, conflict.message);
      const previous = conversation.stateKey === null ? undefined : await states.open(conversation.stateKey);
      const key = `conversations/${conversation.id}/state-files-${randomUUID()}.tar.gz`;
      const changed = failIfStalled(changedState(previous?.stream, change, states.limits.archive), STALLED_MS, `the change of ${conversation.id}`);
      await storeState(states, key, changed);
      // A new state that did not become the conversation's is never left behind.
      const replaced = await store.replaceState(conversation.id, conversation.stateKey, key).catch(async (error: unknown) => {
        await states.delete(key);
        throw error;
      });
      if (replaced.replaced) {
        // The change is made: a state left behind costs storage, not the client's answer.
        if (conversation.stateKey !== null) {
          const old = conversation.stateKey;
          await states.delete(old).catch((error: unknown) => this.deps.log(`could not delete the replaced state ${old}: ${String(error)}`));
        }
        return;
      }
      await states.delete(key);
      if ('activeTurnId' in replaced) throw runningTurn(replaced.activeTurnId);
      if ('missing' in replaced) throw new ServiceError('not_found', `conversation ${conversationId} not found`);
    }
    throw new ServiceError('conflict', `the workspace changed ${CHANGE_ATTEMPTS} times while this change was made; try again`);
  }

  /** A turn that still runs refuses the change; one that is over but not yet settled is settled first. */
  private async refuseWhileRunning(conversation: Conversation): Promise<void> {
    const unfinished = (await this.deps.store.listUnfinishedTurns(conversation.userId)).filter((turn) => turn.conversationId === conversation.id);
    for (const turn of unfinished) {
      const now = await this.lifecycle.reconcile(turn);
      if (!isFinal(now.status)) throw runningTurn(now.id);
    }
  }
}

const runningTurn = (activeTurnId: string) =>
  new ServiceError('conflict', 'a turn is running in this conversation: its files change when it ends', { activeTurnId });

function checkedPath(raw: string): string {
  const broken = pathRuleBroken(raw);
  if (broken !== undefined) throw new ServiceError('invalid_request', `bad path: ${broken}`);
  return raw;
}
