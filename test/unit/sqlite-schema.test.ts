import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { emptyUsage } from '../../functions/src/contract/turn.js';
import { newTurn } from '../../functions/src/domain/turn.js';
import { SqliteConversationStore } from '../../functions/src/store/sqlite.js';

describe('the SQLite store on a database from an earlier release', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'clauderun-schema-'));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('adds the columns it lacks and keeps what it holds', async () => {
    const file = path.join(dir, 'old.sqlite');
    const first = new SqliteConversationStore(file);
    await first.createConversation({
      id: 'c1',
      userId: 'u1',
      title: 't',
      createdAt: 'a',
      updatedAt: 'a',
      sessionId: null,
      stateKey: null,
      options: {},
    });
    await first.startTurn(
      newTurn({ id: 't1', conversationId: 'c1', userId: 'u1', prompt: 'hi', createdAt: new Date().toISOString(), deadlineAt: 'z' }),
    );
    await first.close();
    // What a database written before `stopped_by` existed looks like.
    const raw = new DatabaseSync(file);
    raw.exec('ALTER TABLE turns DROP COLUMN stopped_by');
    // And one from before agent options.
    raw.exec('ALTER TABLE turns DROP COLUMN options');
    raw.exec('ALTER TABLE conversations DROP COLUMN options');
    raw.close();

    const reopened = new SqliteConversationStore(file);
    expect(await reopened.getTurn('t1')).toMatchObject({ id: 't1', prompt: 'hi', stoppedBy: null, options: {} });
    expect(await reopened.getConversation('c1')).toMatchObject({ id: 'c1', options: {} });
    const options = { model: 'm', allowedTools: ['Bash(git:*)'], maxTurns: 3 };
    await reopened.createConversation({
      id: 'c2',
      userId: 'u1',
      title: 't',
      createdAt: 'a',
      updatedAt: 'a',
      sessionId: null,
      stateKey: null,
      options,
    });
    expect((await reopened.getConversation('c2'))?.options).toEqual(options);
    expect(await reopened.updateTurn('t1', ['queued'], { status: 'failed', stoppedBy: 'daily_tokens' })).toMatchObject({ stoppedBy: 'daily_tokens' });
    await reopened.close();
  });

  it('leaves an unreadable row out of every list instead of failing them all, and names it', async () => {
    const file = path.join(dir, 'damaged.sqlite');
    const store = new SqliteConversationStore(file);
    const now = new Date().toISOString();
    for (const id of ['good', 'bad']) {
      await store.createConversation({
        id: `c-${id}`,
        userId: 'u1',
        title: id,
        createdAt: now,
        updatedAt: now,
        sessionId: null,
        stateKey: null,
        options: {},
      });
      await store.startTurn(newTurn({ id: `t-${id}`, conversationId: `c-${id}`, userId: 'u1', prompt: id, createdAt: now, deadlineAt: now }));
    }
    await store.close();
    // A token count no metering writes (not a whole number): the row no longer parses.
    const raw = new DatabaseSync(file);
    raw.prepare("UPDATE turns SET usage = ? WHERE id = 't-bad'").run(JSON.stringify({ ...emptyUsage(), inputTokens: 1.5 }));
    raw.close();

    const errors: string[] = [];
    const spy = vi.spyOn(console, 'error').mockImplementation((line: string) => void errors.push(line));
    const reopened = new SqliteConversationStore(file);
    try {
      expect((await reopened.listUnfinishedTurns()).map((turn) => turn.id)).toEqual(['t-good']);
      expect((await reopened.listUnfinishedTurns('u1')).map((turn) => turn.id)).toEqual(['t-good']);
      expect((await reopened.listTurns('c-good')).map((turn) => turn.id)).toEqual(['t-good']);
      expect(await reopened.listTurns('c-bad')).toEqual([]);
      expect((await reopened.listConversations('u1', 10)).map((c) => c.id).sort()).toEqual(['c-bad', 'c-good']);
      await expect(reopened.getTurn('t-bad')).rejects.toThrow();
      expect(errors.some((line) => line.includes('turn t-bad cannot be read'))).toBe(true);
    } finally {
      spy.mockRestore();
      await reopened.close();
    }
  });
});
