import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PoolTokens } from '../../functions/src/conversations/turn-token.js';
import { WarmPool } from '../../functions/src/conversations/warm-pool.js';
import type { SandboxEnd, SandboxLauncher, WarmSandboxHandle, WarmSandboxSpec } from '../../functions/src/sandbox/launcher.js';
import { SqliteConversationStore } from '../../functions/src/store/sqlite.js';
import { conversation, turn } from '../support/conversation-store-adapters.js';

/** Warm sandboxes that run nothing: what the pool asks of them, and when it stops them, is recorded. */
class RecordingLauncher implements SandboxLauncher {
  readonly name = 'recording';
  readonly sandboxesOutliveProcess = false;
  readonly cancelled = new Set<string>();
  /** Each cancel waits for this before it is done (a cgroup kill, an Admin API call). */
  cancelGate: Promise<void> = Promise.resolve();

  async launch(): Promise<never> {
    throw new Error('no sandbox for a turn here');
  }

  async launchWarm(spec: WarmSandboxSpec): Promise<WarmSandboxHandle> {
    let end: (value: SandboxEnd) => void = () => {};
    const ended = new Promise<SandboxEnd>((resolve) => (end = resolve));
    const ref = `recording:${spec.sandboxId}`;
    return {
      ref,
      ended,
      cancel: async () => {
        this.cancelled.add(ref);
        await this.cancelGate;
        end({ kind: 'cancelled' });
      },
      claimed: () => {},
    };
  }

  reattach(): undefined {
    return undefined;
  }

  async status(): Promise<undefined> {
    return undefined;
  }

  async close(): Promise<void> {}
}

describe('the warm pool', () => {
  let dir: string;
  let store: SqliteConversationStore;
  let launcher: RecordingLauncher;
  let pool: WarmPool;
  const logs: string[] = [];

  beforeEach(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'clauderun-warm-pool-'));
    store = new SqliteConversationStore(path.join(dir, 'db.sqlite'));
    launcher = new RecordingLauncher();
    pool = new WarmPool({
      store,
      launcher,
      tokens: new PoolTokens('p'.repeat(32)),
      settings: { size: 1, idleSeconds: 600 },
      turnTimeoutSeconds: 600,
      // One sandbox may run: a running turn leaves the pool no room.
      runningSandboxes: 1,
      startsPerMinute: Number.POSITIVE_INFINITY,
      log: (line) => logs.push(line),
    });
    for (const id of ['c1', 'c2']) await store.createConversation(conversation(id));
  });
  afterEach(async () => {
    await pool.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A turn of conversation `c`, created now, queued. */
  const queued = async (id: string, c: string) => {
    const now = new Date().toISOString();
    await store.startTurn(turn(id, { conversationId: c, createdAt: now, deadlineAt: new Date(Date.now() + 600_000).toISOString() }));
  };

  it('never stops a warm sandbox a turn claimed while the pool was giving way to running turns', async () => {
    await pool.fill();
    const [warm] = await store.listWarmSandboxes();
    await store.updateWarmSandbox(warm!.id, { seenAt: new Date().toISOString() });
    // A turn runs (not in the pool's sandbox): at the cap, the pool must give its sandbox up.
    await queued('t-a', 'c1');
    let release = () => {};
    launcher.cancelGate = new Promise<void>((resolve) => (release = resolve));
    const giving = pool.fill();
    await new Promise((resolve) => setTimeout(resolve, 50));
    // Meanwhile that turn ends and another comes, and claims whatever warm sandbox is there.
    await store.updateTurn('t-a', ['queued'], { status: 'cancelled' });
    await queued('t-b', 'c2');
    const claimed = await pool.claim('t-b', () => []);
    release();
    await giving;
    // Either the claim found none (the pool had already let it go), or what it got was not stopped.
    if (claimed !== undefined) expect(launcher.cancelled.has(claimed.turn.sandboxRef ?? '')).toBe(false);
    else expect(launcher.cancelled.has(warm!.ref ?? '')).toBe(true);
    expect(claimed?.turn.status ?? 'queued').not.toBe('cancelled');
  });

  it('a sandbox the pool stopped itself is no failure: the next one starts without a delay', async () => {
    await pool.fill();
    const [first] = await store.listWarmSandboxes();
    await queued('t-a', 'c1');
    await pool.fill();
    expect(launcher.cancelled.has(first!.ref ?? '')).toBe(true);
    await store.updateTurn('t-a', ['queued'], { status: 'cancelled' });
    await pool.fill();
    const after = await store.listWarmSandboxes();
    expect(after.map((w) => w.id)).not.toContain(first!.id);
    expect(after).toHaveLength(1);
    expect(logs.join('\n')).not.toMatch(/ended before its time/);
  });
});
