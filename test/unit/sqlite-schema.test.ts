import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, describe, expect, it } from 'vitest';
import { newTurn } from '../../functions/src/domain/turn.js';
import { SqliteConversationStore } from '../../functions/src/store/sqlite.js';

describe('the SQLite store on a database from an earlier release', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'clauderun-schema-'));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('adds the columns it lacks and keeps what it holds', async () => {
    const file = path.join(dir, 'old.sqlite');
    const first = new SqliteConversationStore(file);
    await first.createConversation({ id: 'c1', userId: 'u1', title: 't', createdAt: 'a', updatedAt: 'a', sessionId: null, stateKey: null });
    await first.startTurn(
      newTurn({ id: 't1', conversationId: 'c1', userId: 'u1', prompt: 'hi', createdAt: new Date().toISOString(), deadlineAt: 'z' }),
    );
    await first.close();
    // What a database written before `stopped_by` existed looks like.
    const raw = new DatabaseSync(file);
    raw.exec('ALTER TABLE turns DROP COLUMN stopped_by');
    raw.close();

    const reopened = new SqliteConversationStore(file);
    expect(await reopened.getTurn('t1')).toMatchObject({ id: 't1', prompt: 'hi', stoppedBy: null });
    expect(await reopened.updateTurn('t1', ['queued'], { status: 'failed', stoppedBy: 'daily_tokens' })).toMatchObject({ stoppedBy: 'daily_tokens' });
    await reopened.close();
  });
});
