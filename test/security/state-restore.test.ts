import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { SqliteConversationStore } from '../../functions/src/store/sqlite.js';
import { prompt, useServiceWithFake, type RunningService } from '../support/service.js';
import { commandOutput, turnOf } from '../support/in-sandbox.js';
import { tarHeader } from '../support/tar-bytes.js';

const GiB = 1024 ** 3;

/**
 * A gzip bomb as a conversation's state: one file of 4 GiB of zeros in the workspace, as a
 * few MB of concatenated gzip members (which gunzip and tar -z read as one stream).
 */
function gzipBomb(): Buffer {
  const block = gzipSync(Buffer.alloc(16 * 1024 * 1024), { level: 9 });
  const blocks = (4 * GiB) / (16 * 1024 * 1024);
  return Buffer.concat([gzipSync(tarHeader('workspace/zeros', 4 * GiB)), ...Array<Buffer>(blocks).fill(block), gzipSync(Buffer.alloc(1024))]);
}

async function conversationStateKey(service: RunningService, conversationId: string): Promise<string | null> {
  const store = new SqliteConversationStore(path.join(service.dataDir, 'clauderun.db'));
  try {
    return (await store.getConversation(conversationId))?.stateKey ?? null;
  } finally {
    await store.close();
  }
}

describe("restoring a conversation's state", () => {
  const running = useServiceWithFake({ CLAUDERUN_TURN_TIMEOUT_SECONDS: '120' });

  it("refuses an archive that expands past the disk budget, quickly, and keeps the conversation's state", async () => {
    const first = await prompt(running.service, 'bomb', { message: 'bash: echo made > /workspace/note' });
    expect(first.status, JSON.stringify(first.body)).toBe(200);
    const conversationId = String(first.body.conversationId);
    const key = await conversationStateKey(running.service, conversationId);
    expect(key).not.toBeNull();

    const bomb = gzipBomb();
    expect(bomb.length).toBeLessThan(8 * 1024 * 1024);
    const blob = path.join(running.service.dataDir, 'blobs', key ?? '');
    writeFileSync(blob, bomb);

    const started = Date.now();
    const next = turnOf(await prompt(running.service, 'bomb', { message: 'bash: du -sm /workspace', conversationId }));
    const seconds = (Date.now() - started) / 1000;
    expect(next.status).toBe('failed');
    expect(next.reason).toMatch(/saved state expands to more than 536870912 bytes, over the sandbox's disk budget; it was not restored/);
    expect(seconds).toBeLessThan(20);

    // The previous state is the conversation's still, untouched.
    expect(await conversationStateKey(running.service, conversationId)).toBe(key);
    expect(createHash('sha256').update(readFileSync(blob)).digest('hex')).toBe(createHash('sha256').update(bomb).digest('hex'));
    // The files API reads the same archive on the host, held to the same budget: 413, and nothing is written.
    for (const route of ['files/note', 'archive', 'archive?format=zip']) {
      const read = await fetch(`${running.service.url}/api/conversations/${conversationId}/${route}`, { headers: { 'x-user-id': 'bomb' } });
      expect(read.status, route).toBe(413);
      expect(await read.json()).toMatchObject({
        error: { code: 'too_large', message: expect.stringContaining('expands to more than 536870912 bytes') },
      });
    }
    // And the service goes on: a new conversation works.
    expect(await commandOutput(running.service, 'echo fine')).toContain('fine');
  });
});
