import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Conversation } from '../../functions/src/domain/conversation.js';
import { newTurn, type Turn } from '../../functions/src/domain/turn.js';
import type { ConversationStore } from '../../functions/src/store/conversation-store.js';
import { FirestoreConversationStore } from '../../functions/src/store/firestore.js';
import { SqliteConversationStore } from '../../functions/src/store/sqlite.js';
import { emulatorForSuite } from './firestore-emulator.js';

/**
 * One suite, every ConversationStore adapter: what the port promises, as behaviour. Each test gets
 * a fresh, empty store (its own SQLite file, its own Firestore collection prefix).
 */
export interface Adapter {
  name: string;
  /** Why the adapter cannot run on this machine: its tests are then skipped, saying so. */
  unavailable?: string;
  setUp(): Promise<void>;
  tearDown(): Promise<void>;
  /** A new, empty store. */
  fresh(): ConversationStore;
  /** A second handle on the data of the last fresh() store, as a restarted process opens it. */
  reopen(): ConversationStore;
}

export function sqlite(): Adapter {
  let dir = '';
  let file = '';
  let n = 0;
  return {
    name: 'SQLite',
    setUp: async () => {
      dir = mkdtempSync(path.join(tmpdir(), 'clauderun-store-'));
    },
    tearDown: async () => rmSync(dir, { recursive: true, force: true }),
    fresh: () => {
      file = path.join(dir, `db-${++n}.sqlite`);
      return new SqliteConversationStore(file);
    },
    reopen: () => new SqliteConversationStore(file),
  };
}

export function firestore(suite = 'conversation store'): Adapter {
  const emulator = emulatorForSuite(suite);
  const run = randomUUID().slice(0, 8);
  let prefix = '';
  let n = 0;
  return {
    name: 'Firestore',
    unavailable: emulator.unavailable,
    setUp: emulator.setUp,
    tearDown: emulator.tearDown,
    fresh: () => {
      prefix = `test-${run}-${++n}-`;
      return new FirestoreConversationStore(emulator.client(), prefix);
    },
    reopen: () => new FirestoreConversationStore(emulator.client(), prefix),
  };
}

export const T0 = Date.parse('2020-01-01T00:00:00.000Z');
/** A timestamp `seconds` after a fixed start, as the port stores them. */
export const at = (seconds: number): string => new Date(T0 + seconds * 1000).toISOString();

export const conversation = (id: string, overrides: Partial<Conversation> = {}): Conversation => ({
  id,
  userId: 'u1',
  title: 'hello',
  createdAt: at(0),
  updatedAt: at(0),
  sessionId: null,
  stateKey: null,
  options: {},
  ...overrides,
});

export const turn = (id: string, overrides: Partial<Turn> = {}): Turn =>
  newTurn({ id, conversationId: 'c1', userId: 'u1', prompt: 'hello', createdAt: at(1), deadlineAt: at(601), ...overrides });
