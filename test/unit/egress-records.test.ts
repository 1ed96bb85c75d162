import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { EgressData } from '../../functions/src/contract/events.js';
import { EgressRecords } from '../../functions/src/conversations/egress-records.js';
import { newTurn } from '../../functions/src/domain/turn.js';
import type { ConversationStore } from '../../functions/src/store/conversation-store.js';
import { SqliteConversationStore } from '../../functions/src/store/sqlite.js';

const TURN = { id: 't', userId: 'u' };
const attempt = (bytesIn: number): EgressData => ({ host: 'h.test', port: 443, allowed: true, bytesOut: 1, bytesIn, durationMs: 1 });

describe('egress records', () => {
  let dir: string;
  let store: SqliteConversationStore;
  /** Each write's number of events, as the store saw them. */
  let writes: number[];
  let failNext: boolean;
  let slowStore: Pick<ConversationStore, 'recordEgress'>;
  beforeEach(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'clauderun-egress-records-'));
    store = new SqliteConversationStore(path.join(dir, 'store.sqlite'));
    const now = new Date().toISOString();
    await store.createConversation({ id: 'c', userId: 'u', title: '', createdAt: now, updatedAt: now, sessionId: null, stateKey: null, options: {} });
    await store.startTurn(newTurn({ id: 't', conversationId: 'c', userId: 'u', prompt: 'p', createdAt: now, deadlineAt: now }));
    writes = [];
    failNext = false;
    // A write that takes a while, as a Firestore transaction does.
    slowStore = {
      recordEgress: async (...args) => {
        writes.push(args[1].length);
        await sleep(50);
        if (failNext) {
          failNext = false;
          throw new Error('ABORTED: too much contention');
        }
        return store.recordEgress(...args);
      },
    };
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("writes a turn's attempts that end while a write is in flight together in the next write, every one kept", async () => {
    const records = new EgressRecords(slowStore);
    await Promise.all(Array.from({ length: 20 }, (_, i) => records.record(TURN, attempt(i))));
    expect(writes).toEqual([1, 19]);
    expect((await store.listEvents('t', 0)).map((e) => (e.data as EgressData).bytesIn)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(await store.getTurn('t')).toMatchObject({ egressBytes: 20 + (19 * 20) / 2 });
  });

  it('writes a lone attempt at once, and the next one after it alone', async () => {
    const records = new EgressRecords(slowStore);
    await records.record(TURN, attempt(5));
    await records.record(TURN, attempt(6));
    expect(writes).toEqual([1, 1]);
  });

  it('a failed write fails the attempts it carried, and the next batch is still written', async () => {
    const records = new EgressRecords(slowStore);
    failNext = true;
    const first = records.record(TURN, attempt(1));
    const later = [records.record(TURN, attempt(2)), records.record(TURN, attempt(3))];
    await expect(first).rejects.toThrow('ABORTED');
    await Promise.all(later);
    expect((await store.listEvents('t', 0)).map((e) => (e.data as EgressData).bytesIn)).toEqual([2, 3]);
  });
});
