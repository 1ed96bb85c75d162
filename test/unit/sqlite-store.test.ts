import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { emptyUsage } from '../../functions/src/contract/turn.js';
import type { Turn } from '../../functions/src/store/conversation-store.js';
import { SqliteConversationStore } from '../../functions/src/store/sqlite.js';

const now = new Date().toISOString();
const conversation = { id: 'c1', userId: 'u1', title: 'hello', createdAt: now, updatedAt: now, sessionId: null, stateKey: null };
const turn = (id: string, overrides: Partial<Turn> = {}): Turn => ({
  id,
  conversationId: 'c1',
  userId: 'u1',
  prompt: 'hello',
  status: 'queued',
  reason: null,
  text: null,
  usage: emptyUsage(),
  costUsd: 0,
  createdAt: now,
  startedAt: null,
  finishedAt: null,
  deadlineAt: now,
  uploadedStateKey: null,
  idempotencyKey: null,
  ...overrides,
});

describe('the SQLite conversation store', () => {
  let dir: string;
  let store: SqliteConversationStore;
  beforeEach(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'clauderun-store-'));
    store = new SqliteConversationStore(path.join(dir, 'db.sqlite'));
    await store.createConversation(conversation);
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a second unfinished turn in a conversation, naming the running one', async () => {
    expect(await store.startTurn(turn('t1'))).toEqual({ started: true });
    expect(await store.startTurn(turn('t2'))).toEqual({ started: false, activeTurnId: 't1' });
    await store.updateTurn('t1', ['queued'], { status: 'failed' });
    expect(await store.startTurn(turn('t2'))).toEqual({ started: true });
  });

  it('updates a turn only from the expected states: a final turn never changes', async () => {
    await store.startTurn(turn('t1'));
    expect((await store.updateTurn('t1', ['queued'], { status: 'succeeded', text: 'done' }))?.status).toBe('succeeded');
    expect(await store.updateTurn('t1', ['queued', 'starting', 'running'], { status: 'failed', reason: 'late' })).toBeUndefined();
    expect(await store.getTurn('t1')).toMatchObject({ status: 'succeeded', text: 'done', reason: null });
  });

  it('adds metered usage atomically', async () => {
    await store.startTurn(turn('t1'));
    const usage = { ...emptyUsage(), inputTokens: 10, outputTokens: 2, modelCalls: 1 };
    await Promise.all([store.addUsage('t1', usage, 0.5), store.addUsage('t1', usage, 0.25)]);
    expect(await store.getTurn('t1')).toMatchObject({ usage: { inputTokens: 20, outputTokens: 4, modelCalls: 2 }, costUsd: 0.75 });
  });

  it('commits state and returns the key it replaced', async () => {
    expect(await store.commitState('c1', 's1', 'k1')).toBeNull();
    expect(await store.commitState('c1', 's2', 'k2')).toBe('k1');
    expect(await store.getConversation('c1')).toMatchObject({ sessionId: 's2', stateKey: 'k2' });
  });

  it('keeps everything across a reopen, and lists unfinished turns', async () => {
    await store.startTurn(turn('t1', { status: 'running' }));
    await store.close();
    store = new SqliteConversationStore(path.join(dir, 'db.sqlite'));
    expect(await store.getConversation('c1')).toEqual(conversation);
    expect((await store.listUnfinishedTurns()).map((t) => t.id)).toEqual(['t1']);
  });
});
