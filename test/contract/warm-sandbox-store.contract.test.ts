import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { NewTurnEvent } from '../../functions/src/domain/turn-event.js';
import type { Turn } from '../../functions/src/domain/turn.js';
import { WARM_EXPIRY_MARGIN_MS, WARM_READY_WINDOW_MS, type WarmSandbox } from '../../functions/src/domain/warm-sandbox.js';
import type { ConversationStore } from '../../functions/src/store/conversation-store.js';
import { NO_LIMITS } from '../../functions/src/domain/quota.js';
import { type Adapter, at, conversation, firestore, sqlite, T0, turn } from '../support/conversation-store-adapters.js';

/** One suite, every ConversationStore adapter: the warm sandboxes the store keeps, and the claim. */

const NOW = new Date(T0 + 100_000);
const ms = (offset: number): string => new Date(NOW.getTime() + offset).toISOString();

/** A warm sandbox ready to be claimed at NOW: launched, its runner seen just now, long before its expiry. */
const ready = (id: string, overrides: Partial<WarmSandbox> = {}): WarmSandbox => ({
  id,
  ref: `local:${id}`,
  createdAt: ms(-10_000),
  seenAt: ms(-1_000),
  expiresAt: ms(600_000),
  turnId: null,
  ...overrides,
});

const starting = (t: Turn): NewTurnEvent[] => [{ type: 'status', data: { status: t.status } }];

function warmContract(adapter: Adapter): void {
  const title =
    adapter.unavailable === undefined
      ? `warm sandboxes in the ${adapter.name} store`
      : `warm sandboxes in the ${adapter.name} store (SKIPPED: ${adapter.unavailable})`;
  (adapter.unavailable === undefined ? describe : describe.skip)(title, () => {
    let store: ConversationStore;
    beforeAll(() => adapter.setUp());
    afterAll(() => adapter.tearDown());
    beforeEach(async () => {
      store = adapter.fresh();
      await store.createConversation(conversation('c1'));
      await store.createConversation(conversation('c2'));
    });
    afterEach(() => store.close());

    it('adds a warm sandbox only while fewer than the limit are idle; claimed and expired ones do not count', async () => {
      expect(await store.addWarmSandbox(ready('w1'), 2, NOW)).toEqual({ added: true });
      expect(await store.addWarmSandbox(ready('w2', { ref: null, seenAt: null }), 2, NOW)).toEqual({ added: true });
      expect(await store.addWarmSandbox(ready('w3'), 2, NOW)).toEqual({ added: false, poolFull: true });
      await store.addWarmSandbox(ready('claimed', { turnId: 't-old' }), 10, NOW);
      await store.addWarmSandbox(ready('expired', { expiresAt: ms(-1) }), 10, NOW);
      expect(await store.addWarmSandbox(ready('w3'), 3, NOW)).toEqual({ added: true });
      expect((await store.listWarmSandboxes()).map((w) => w.id).sort()).toEqual(['claimed', 'expired', 'w1', 'w2', 'w3']);
      expect(await store.getWarmSandbox('w2')).toEqual(ready('w2', { ref: null, seenAt: null }));
    });

    it("counts a warm sandbox's start against the service's starts per minute, with the turns' starts", async () => {
      const quota = { ...NO_LIMITS, sandboxStartsPerMinute: 2 };
      const started = await store.startTurn(turn('t1', { createdAt: ms(-1_000) }), { quota });
      expect(started).toEqual({ started: true });
      expect(await store.addWarmSandbox(ready('w1'), 5, NOW, { startsPerMinute: 2 })).toEqual({ added: true });
      const refused = await store.addWarmSandbox(ready('w2'), 5, NOW, { startsPerMinute: 2 });
      expect(refused).toMatchObject({ added: false, limitHit: { limit: 'sandbox_starts_per_minute', max: 2 } });
      // Nor may a turn start now: the warm one took the last start of the minute.
      await store.createConversation(conversation('c3'));
      expect(await store.startTurn(turn('t2', { conversationId: 'c3', createdAt: ms(0) }), { quota })).toMatchObject({
        started: false,
        limitHit: { limit: 'sandbox_starts_per_minute' },
      });
      // Uncounted (a start paid for by a claim), it is judged by the pool alone.
      expect(await store.addWarmSandbox(ready('w2'), 5, NOW)).toEqual({ added: true });
      // A minute on, the window has room again.
      expect(await store.addWarmSandbox(ready('w3'), 5, new Date(NOW.getTime() + 61_000), { startsPerMinute: 2 })).toEqual({ added: true });
    });

    it('counts a start at the time it is made, whenever the idle ones are counted from', async () => {
      const quota = { ...NO_LIMITS, sandboxStartsPerMinute: 3 };
      await store.startTurn(turn('t1', { createdAt: ms(-1_000) }), { quota });
      // Counted ahead (the pool renews sandboxes about to expire), the start itself is now's:
      // the turn's start stays counted, and a minute on both are out of the window.
      const ahead = new Date(NOW.getTime() + 90_000);
      expect(await store.addWarmSandbox(ready('w1'), 5, NOW, { idleAt: ahead, startsPerMinute: 3 })).toEqual({ added: true });
      expect(await store.addWarmSandbox(ready('w2'), 5, NOW, { idleAt: ahead, startsPerMinute: 3 })).toEqual({ added: true });
      expect(await store.addWarmSandbox(ready('w3'), 5, NOW, { idleAt: ahead, startsPerMinute: 3 })).toMatchObject({ added: false, limitHit: {} });
      const later = new Date(NOW.getTime() + 61_000);
      expect(await store.addWarmSandbox(ready('w3'), 5, later, { idleAt: later, startsPerMinute: 3 })).toEqual({ added: true });
      // Idle ones are judged at idleAt: one expiring before it does not count.
      await store.addWarmSandbox(ready('expiring', { expiresAt: ms(30_000) }), 10, NOW);
      expect(await store.addWarmSandbox(ready('w4'), 4, NOW)).toEqual({ added: false, poolFull: true });
      expect(await store.addWarmSandbox(ready('w4'), 4, NOW, { idleAt: ahead })).toEqual({ added: true });
    });

    it('sets a ref and when the runner was seen; a removed one is gone', async () => {
      await store.addWarmSandbox(ready('w1', { ref: null, seenAt: null }), 1, NOW);
      expect(await store.updateWarmSandbox('w1', { ref: 'exec-1' })).toEqual(ready('w1', { ref: 'exec-1', seenAt: null }));
      expect(await store.updateWarmSandbox('w1', { seenAt: ms(0) })).toEqual(ready('w1', { ref: 'exec-1', seenAt: ms(0) }));
      await store.removeWarmSandbox('w1');
      expect(await store.getWarmSandbox('w1')).toBeUndefined();
      expect(await store.updateWarmSandbox('w1', { seenAt: ms(1) })).toBeUndefined();
    });

    it('a claim binds the oldest ready sandbox to the queued turn and moves the turn to starting with its ref and events, at once', async () => {
      await store.addWarmSandbox(ready('younger', { createdAt: ms(-5_000) }), 5, NOW);
      await store.addWarmSandbox(ready('older', { createdAt: ms(-9_000) }), 5, NOW);
      await store.startTurn(turn('t1'));
      const claimed = await store.claimWarmSandbox('t1', NOW, { events: starting });
      expect(claimed?.sandbox).toEqual(ready('older', { createdAt: ms(-9_000), turnId: 't1' }));
      expect(claimed?.turn).toMatchObject({ id: 't1', status: 'starting', sandboxRef: 'local:older' });
      expect(await store.getTurn('t1')).toEqual(claimed?.turn);
      expect(await store.getWarmSandbox('older')).toEqual(claimed?.sandbox);
      expect((await store.listEvents('t1', 0)).map((e) => e.data)).toEqual([{ status: 'starting' }]);
      // Claimed once: a turn that is no longer queued claims nothing, and leaves the other sandbox be.
      expect(await store.claimWarmSandbox('t1', NOW)).toBeUndefined();
      expect((await store.getWarmSandbox('younger'))?.turnId).toBeNull();
    });

    it('claims no sandbox that is not ready: not launched, never seen, not seen lately, near its expiry, or claimed', async () => {
      const unready = [
        ready('no-ref', { ref: null }),
        ready('never-seen', { seenAt: null }),
        ready('silent', { seenAt: ms(-WARM_READY_WINDOW_MS - 1) }),
        ready('expiring', { expiresAt: ms(WARM_EXPIRY_MARGIN_MS - 1) }),
        ready('taken', { turnId: 'someone-else' }),
      ];
      for (const sandbox of unready) await store.addWarmSandbox(sandbox, 10, NOW);
      await store.startTurn(turn('t1'));
      expect(await store.claimWarmSandbox('t1', NOW)).toBeUndefined();
      expect(await store.getTurn('t1')).toMatchObject({ status: 'queued', sandboxRef: null });
      expect(await store.listWarmSandboxes()).toEqual(expect.arrayContaining(unready));
    });

    it('claims for no turn that is not queued, and for no turn that does not exist', async () => {
      await store.addWarmSandbox(ready('w1'), 1, NOW);
      await store.startTurn(turn('t1'));
      await store.updateTurn('t1', ['queued'], { status: 'cancelled' });
      expect(await store.claimWarmSandbox('t1', NOW)).toBeUndefined();
      expect(await store.claimWarmSandbox('missing', NOW)).toBeUndefined();
      expect((await store.getWarmSandbox('w1'))?.turnId).toBeNull();
    });

    it('two turns claiming at once never get the same sandbox: one sandbox goes to exactly one of them', async () => {
      await store.addWarmSandbox(ready('only'), 1, NOW);
      await store.startTurn(turn('t1', { conversationId: 'c1' }));
      await store.startTurn(turn('t2', { conversationId: 'c2' }));
      const claims = await Promise.all(['t1', 't2'].map((id) => store.claimWarmSandbox(id, NOW)));
      const winners = claims.filter((claim) => claim !== undefined);
      expect(winners).toHaveLength(1);
      const winner = winners[0]!.turn.id;
      expect((await store.getWarmSandbox('only'))?.turnId).toBe(winner);
      const loser = winner === 't1' ? 't2' : 't1';
      expect(await store.getTurn(loser)).toMatchObject({ status: 'queued', sandboxRef: null });
    });

    it('as many turns as sandboxes, claiming at once, each get a different one', async () => {
      const n = 4;
      for (let i = 0; i < n; i++) {
        await store.addWarmSandbox(ready(`w${i}`), n, NOW);
        if (i >= 2) await store.createConversation(conversation(`c${i + 1}`));
        await store.startTurn(turn(`t${i}`, { conversationId: `c${i + 1}` }));
      }
      const claims = await Promise.all(Array.from({ length: n }, (_, i) => store.claimWarmSandbox(`t${i}`, NOW)));
      const sandboxes = claims.map((claim) => claim?.sandbox.id);
      expect(sandboxes.every((id) => id !== undefined)).toBe(true);
      expect(new Set(sandboxes).size).toBe(n);
    });

    it('removes an idle warm sandbox only while no turn has claimed it', async () => {
      await store.addWarmSandbox(ready('idle'), 2, NOW);
      await store.addWarmSandbox(ready('taken', { createdAt: ms(-20_000) }), 2, NOW);
      await store.startTurn(turn('t1'));
      expect((await store.claimWarmSandbox('t1', NOW))?.sandbox.id).toBe('taken');
      expect(await store.removeIdleWarmSandbox('taken')).toBe(false);
      expect((await store.getWarmSandbox('taken'))?.turnId).toBe('t1');
      expect(await store.removeIdleWarmSandbox('idle')).toBe(true);
      expect(await store.getWarmSandbox('idle')).toBeUndefined();
      expect(await store.removeIdleWarmSandbox('idle')).toBe(false);
    });

    it('a watch hears of the claim (or of a claim made before it), and of the removal', async () => {
      await store.addWarmSandbox(ready('w1'), 2, NOW);
      await store.addWarmSandbox(ready('w2', { createdAt: ms(-1) }), 2, NOW);
      await store.startTurn(turn('t1'));
      const heard = new Promise<WarmSandbox | undefined>((resolve) => store.watchWarmSandbox('w1', resolve));
      await store.claimWarmSandbox('t1', NOW);
      expect((await heard)?.turnId).toBe('t1');
      const again = await new Promise<WarmSandbox | undefined>((resolve) => store.watchWarmSandbox('w1', resolve));
      expect(again?.turnId).toBe('t1');
      const removal = new Promise<WarmSandbox | undefined>((resolve) => store.watchWarmSandbox('w2', resolve));
      await store.removeWarmSandbox('w2');
      expect(await removal).toBeUndefined();
    });

    it('a stopped watch hears nothing more', async () => {
      await store.addWarmSandbox(ready('w1'), 1, NOW);
      await store.startTurn(turn('t1', { createdAt: at(2) }));
      const heard: Array<WarmSandbox | undefined> = [];
      const stop = store.watchWarmSandbox('w1', (sandbox) => heard.push(sandbox));
      stop();
      await store.claimWarmSandbox('t1', NOW);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(heard).toEqual([]);
    });
  });
}

warmContract(sqlite());
warmContract(firestore('warm sandbox store'));
