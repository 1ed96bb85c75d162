import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { SqliteConversationStore } from '../../functions/src/store/sqlite.js';
import { prompt, useServiceWithFake, type RunningService } from '../support/service.js';
import { commandOutput, turnOf } from '../support/in-sandbox.js';

const GiB = 1024 ** 3;

/** A tar header (ustar) for one regular file of `size` bytes. */
function tarHeader(name: string, size: number): Buffer {
  const header = Buffer.alloc(512);
  const field = (offset: number, length: number, value: string) => header.write(value.padEnd(length, '\0').slice(0, length), offset, 'ascii');
  field(0, 100, name);
  field(100, 8, '0000644');
  field(108, 8, '0001750');
  field(116, 8, '0001750');
  field(124, 12, size.toString(8).padStart(11, '0'));
  field(136, 12, '00000000000');
  field(156, 1, '0');
  field(257, 6, 'ustar');
  field(263, 2, '00');
  header.fill(' ', 148, 156);
  let sum = 0;
  for (const byte of header) sum += byte;
  field(148, 8, `${sum.toString(8).padStart(6, '0')}\0 `);
  return header;
}

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
    // And the service goes on: a new conversation works.
    expect(await commandOutput(running.service, 'echo fine')).toContain('fine');
  });
});
