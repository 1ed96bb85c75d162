import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ToolUseData } from '../../functions/src/contract/events.js';
import { emptyUsage, type TurnStatus } from '../../functions/src/contract/turn.js';
import { turnView } from '../../functions/src/conversations/views.js';
import type { EgressCaps } from '../../functions/src/domain/egress-budget.js';
import { NO_LIMITS, type Quota } from '../../functions/src/domain/quota.js';
import type { NewTurnEvent, TurnEvent } from '../../functions/src/domain/turn-event.js';
import { FINAL_STATUSES, UNFINISHED } from '../../functions/src/domain/turn-state.js';
import type { Turn } from '../../functions/src/domain/turn.js';
import type { ConversationStore } from '../../functions/src/store/conversation-store.js';
import { type Adapter, at, conversation, firestore, sqlite, turn } from '../support/conversation-store-adapters.js';

/** A step of the agent's, as the runner posts them. */
const text = (words: string): NewTurnEvent => ({ type: 'text', data: { text: words } });
/** The event a turn's final update records: the turn's view. */
const result = (t: Turn): NewTurnEvent => ({ type: 'result', data: turnView(t) });

const ids = (records: Array<{ id: string }>): string[] => records.map((record) => record.id);

function storeContract(adapter: Adapter): void {
  const title =
    adapter.unavailable === undefined
      ? `the ${adapter.name} conversation store`
      : `the ${adapter.name} conversation store (SKIPPED: ${adapter.unavailable})`;
  (adapter.unavailable === undefined ? describe : describe.skip)(title, () => {
    let store: ConversationStore;
    const opened: ConversationStore[] = [];
    const open = (make: () => ConversationStore) => {
      const made = make();
      opened.push(made);
      return made;
    };

    beforeAll(() => adapter.setUp());
    afterAll(() => adapter.tearDown());
    beforeEach(async () => {
      store = open(adapter.fresh);
      await store.createConversation(conversation('c1'));
    });
    afterEach(async () => {
      for (const each of opened.splice(0)) await each.close();
    });

    describe('conversations', () => {
      it('reads back a created conversation exactly; an unknown id is undefined', async () => {
        expect(await store.getConversation('c1')).toEqual(conversation('c1'));
        expect(await store.getConversation('nope')).toBeUndefined();
        const options = { model: 'm', systemPrompt: 'be brief', disallowedTools: ['Bash'], maxTurns: 2 };
        await store.createConversation(conversation('c-options', { options }));
        expect(await store.getConversation('c-options')).toEqual(conversation('c-options', { options }));
      });

      it("lists only the user's conversations, the most recently active first", async () => {
        await store.createConversation(conversation('c2', { updatedAt: at(20) }));
        await store.createConversation(conversation('c3', { updatedAt: at(10) }));
        await store.createConversation(conversation('other', { userId: 'u2', updatedAt: at(30) }));
        expect(ids(await store.listConversations('u1', 10))).toEqual(['c2', 'c3', 'c1']);
        expect(await store.listConversations('u2', 10)).toEqual([conversation('other', { userId: 'u2', updatedAt: at(30) })]);
        expect(await store.listConversations('nobody', 10)).toEqual([]);
      });

      it('pages with the (updatedAt, id) cursor: no repeats, no gaps, ties on updatedAt by id descending', async () => {
        const updated = [5, 3, 5, 1, 5, 3, 2];
        for (const [i, seconds] of updated.entries()) await store.createConversation(conversation(`p${i}`, { updatedAt: at(seconds) }));
        const expected = ['p4', 'p2', 'p0', 'p5', 'p1', 'p6', 'p3', 'c1'];
        expect(ids(await store.listConversations('u1', 100))).toEqual(expected);

        const seen: string[] = [];
        let page = await store.listConversations('u1', 3);
        while (page.length > 0) {
          seen.push(...ids(page));
          const last = page.at(-1)!;
          page = await store.listConversations('u1', 3, { updatedAt: last.updatedAt, id: last.id });
        }
        expect(seen).toEqual(expected);
      });

      it('a started turn makes its conversation the most recently active', async () => {
        await store.createConversation(conversation('c2', { updatedAt: at(5) }));
        expect(ids(await store.listConversations('u1', 10))).toEqual(['c2', 'c1']);
        await store.startTurn(turn('t1', { createdAt: at(9) }));
        expect(await store.getConversation('c1')).toMatchObject({ updatedAt: at(9) });
        expect(ids(await store.listConversations('u1', 10))).toEqual(['c1', 'c2']);
      });

      it("commits state together with a turn's update, and only when the update applies", async () => {
        await store.startTurn(turn('t1', { status: 'running' }));
        expect(await store.updateTurn('t1', ['queued'], { status: 'succeeded' }, { commit: { sessionId: 's0', stateKey: 'k0' } })).toBeUndefined();
        expect(await store.getConversation('c1')).toMatchObject({ sessionId: null, stateKey: null });
        const done = await store.updateTurn('t1', ['running'], { status: 'succeeded' }, { commit: { sessionId: 's1', stateKey: 'k1' } });
        expect(done?.status).toBe('succeeded');
        const committed = await store.getConversation('c1');
        expect(committed).toMatchObject({ sessionId: 's1', stateKey: 'k1' });
        expect(committed!.updatedAt > at(1)).toBe(true);
      });

      it('deletes a conversation with its turns and events, returning every state key it referenced', async () => {
        await store.startTurn(turn('t1', { idempotencyKey: 'key-1' }));
        await store.appendEvents('t1', [{ type: 'text', data: { text: 'a' } }]);
        await store.updateTurn(
          't1',
          ['queued'],
          { status: 'succeeded', uploadedStateKey: 'k-conversation' },
          { commit: { sessionId: 's1', stateKey: 'k-conversation' } },
        );
        await store.startTurn(turn('t2', { createdAt: at(2) }));
        await store.updateTurn('t2', ['queued'], { status: 'failed', uploadedStateKey: 'k-t2' });
        await store.startTurn(turn('t3', { createdAt: at(3) }));
        await store.appendEvents('t3', [
          { type: 'text', data: { text: 'b' } },
          { type: 'text', data: { text: 'c' } },
        ]);
        await store.createConversation(conversation('kept'));
        await store.startTurn(turn('kept-turn', { conversationId: 'kept' }));
        await store.appendEvents('kept-turn', [text('')]);

        expect((await store.deleteConversation('c1')).sort()).toEqual(['k-conversation', 'k-t2']);

        expect(await store.getConversation('c1')).toBeUndefined();
        expect(await store.listConversations('u1', 10)).toEqual([conversation('kept', { updatedAt: at(1) })]);
        expect(await store.listTurns('c1')).toEqual([]);
        for (const id of ['t1', 't2', 't3']) {
          expect(await store.getTurn(id)).toBeUndefined();
          expect(await store.listEvents(id, 0)).toEqual([]);
        }
        expect(await store.findTurnByIdempotencyKey('u1', 'key-1')).toBeUndefined();
        expect(ids(await store.listUnfinishedTurns())).toEqual(['kept-turn']);
        expect(await store.listEvents('kept-turn', 0)).toHaveLength(1);
        expect(await store.deleteConversation('c1')).toEqual([]);
      });

      it("frees a deleted conversation's idempotency keys", async () => {
        await store.startTurn(turn('t1', { idempotencyKey: 'key-1' }));
        await store.deleteConversation('c1');
        await store.createConversation(conversation('c2'));
        expect(await store.startTurn(turn('t2', { conversationId: 'c2', idempotencyKey: 'key-1' }))).toEqual({ started: true });
      });

      it('keeps everything across a reopen', async () => {
        await store.startTurn(turn('t1', { status: 'running' }));
        await store.appendEvents('t1', [{ type: 'status', data: { status: 'running' } }]);
        await store.close();
        const again = open(adapter.reopen);
        expect(await again.getConversation('c1')).toEqual(conversation('c1', { updatedAt: at(1) }));
        expect(await again.getTurn('t1')).toEqual(turn('t1', { status: 'running' }));
        expect(ids(await again.listUnfinishedTurns())).toEqual(['t1']);
        expect((await again.appendEvents('t1', [text('')]))?.[0]?.seq).toBe(2);
      });
    });

    describe('starting turns', () => {
      it('stores the turn exactly as given', async () => {
        const given = turn('t1', {
          idempotencyKey: 'k',
          prompt: 'do it',
          usage: { ...emptyUsage(), modelCalls: 1 },
          options: { model: 'm', systemPrompt: 'be brief', allowedTools: ['Read', 'Bash(git log:*)'], disallowedTools: ['Write'], maxTurns: 4 },
        });
        expect(await store.startTurn(given)).toEqual({ started: true });
        expect(await store.getTurn('t1')).toEqual(given);
        expect(await store.getTurn('nope')).toBeUndefined();
      });

      it('refuses a second unfinished turn in a conversation, naming the unfinished one', async () => {
        expect(await store.startTurn(turn('t1'))).toEqual({ started: true });
        expect(await store.startTurn(turn('t2'))).toEqual({ started: false, activeTurnId: 't1' });
        await store.updateTurn('t1', ['queued'], { status: 'running' });
        expect(await store.startTurn(turn('t2'))).toEqual({ started: false, activeTurnId: 't1' });
        expect(await store.getTurn('t2')).toBeUndefined();
      });

      it.each(FINAL_STATUSES)('allows the next turn once the unfinished one is %s', async (status) => {
        await store.startTurn(turn('t1'));
        await store.updateTurn('t1', ['queued'], { status });
        expect(await store.startTurn(turn('t2', { createdAt: at(2) }))).toEqual({ started: true });
        expect(await store.startTurn(turn('t3', { createdAt: at(3) }))).toEqual({ started: false, activeTurnId: 't2' });
      });

      it('turns of other conversations do not count', async () => {
        await store.createConversation(conversation('c2'));
        await store.startTurn(turn('t1'));
        expect(await store.startTurn(turn('t2', { conversationId: 'c2' }))).toEqual({ started: true });
      });

      it('creates a new conversation with its first turn, or neither', async () => {
        const fresh = conversation('new', { updatedAt: at(0) });
        expect(await store.startTurn(turn('t1', { conversationId: 'new', createdAt: at(5) }), { newConversation: fresh })).toEqual({ started: true });
        expect(await store.getConversation('new')).toEqual({ ...fresh, updatedAt: at(5) });
        expect(ids(await store.listTurns('new'))).toEqual(['t1']);
        expect(await store.startTurn(turn('t2', { conversationId: 'new', createdAt: at(6) }))).toEqual({ started: false, activeTurnId: 't1' });
        const other = conversation('refused');
        const refused = await store.startTurn(turn('t3', { conversationId: 'refused' }), {
          newConversation: other,
          quota: { ...NO_LIMITS, runningTurnsPerUser: 1 },
        });
        expect(refused).toMatchObject({ started: false, limitHit: { limit: 'running_turns' } });
        expect(await store.getConversation('refused')).toBeUndefined();
      });

      it('refuses a turn for a conversation that does not exist', async () => {
        await expect(store.startTurn(turn('t1', { conversationId: 'nope' }))).rejects.toThrow();
        expect(await store.getTurn('t1')).toBeUndefined();
      });

      it('a used idempotency key returns the existing turn, even when it is final or in another conversation', async () => {
        expect(await store.startTurn(turn('t1', { idempotencyKey: 'key-1' }))).toEqual({ started: true });
        expect(await store.startTurn(turn('t2', { idempotencyKey: 'key-1' }))).toEqual({ started: false, existingTurnId: 't1' });
        await store.updateTurn('t1', ['queued'], { status: 'succeeded' });
        await store.createConversation(conversation('c2'));
        expect(await store.startTurn(turn('t3', { conversationId: 'c2', idempotencyKey: 'key-1' }))).toEqual({
          started: false,
          existingTurnId: 't1',
        });
        expect(await store.findTurnByIdempotencyKey('u1', 'key-1')).toMatchObject({ id: 't1', status: 'succeeded' });
        expect(await store.getTurn('t3')).toBeUndefined();
      });

      it('idempotency keys belong to a user: another user may use the same key', async () => {
        await store.createConversation(conversation('c2', { userId: 'u2' }));
        await store.startTurn(turn('t1', { idempotencyKey: 'key/with:odd chars' }));
        expect(await store.startTurn(turn('t2', { conversationId: 'c2', userId: 'u2', idempotencyKey: 'key/with:odd chars' }))).toEqual({
          started: true,
        });
        expect(await store.findTurnByIdempotencyKey('u1', 'key/with:odd chars')).toMatchObject({ id: 't1' });
        expect(await store.findTurnByIdempotencyKey('u2', 'key/with:odd chars')).toMatchObject({ id: 't2' });
        expect(await store.findTurnByIdempotencyKey('u1', 'other')).toBeUndefined();
      });

      it('of 10 concurrent starts in one conversation exactly one starts; the others name it', async () => {
        const results = await Promise.all(Array.from({ length: 10 }, (_, i) => store.startTurn(turn(`t${i}`, { createdAt: at(1 + i) }))));
        const winners = results.flatMap((result, i) => (result.started ? [`t${i}`] : []));
        expect(winners).toHaveLength(1);
        for (const result of results.filter((r) => !r.started)) expect(result).toEqual({ started: false, activeTurnId: winners[0] });
        expect(ids(await store.listTurns('c1'))).toEqual(winners);
      });

      it('of 10 concurrent starts with one idempotency key exactly one starts; the others get it back', async () => {
        for (let i = 0; i < 10; i++) await store.createConversation(conversation(`k${i}`));
        const results = await Promise.all(
          Array.from({ length: 10 }, (_, i) => store.startTurn(turn(`t${i}`, { conversationId: `k${i}`, idempotencyKey: 'same' }))),
        );
        const winners = results.flatMap((result, i) => (result.started ? [`t${i}`] : []));
        expect(winners).toHaveLength(1);
        for (const result of results.filter((r) => !r.started)) expect(result).toEqual({ started: false, existingTurnId: winners[0] });
        expect(ids(await store.listUnfinishedTurns())).toEqual(winners);
      });
    });

    describe('updating turns (compare-and-set)', () => {
      it('applies the patch only from the listed states, returning the new turn', async () => {
        await store.startTurn(turn('t1'));
        expect(await store.updateTurn('t1', ['running'], { status: 'succeeded' })).toBeUndefined();
        expect(await store.updateTurn('t1', [], { status: 'starting' })).toBeUndefined();
        const started = await store.updateTurn('t1', ['queued'], { status: 'starting' });
        expect(started).toEqual(turn('t1', { status: 'starting' }));
        const running = await store.updateTurn('t1', ['starting'], { status: 'running', startedAt: at(2) });
        expect(running).toEqual(turn('t1', { status: 'running', startedAt: at(2) }));
        expect(await store.updateTurn('t1', ['running'], { uploadedStateKey: 'k1' })).toMatchObject({ status: 'running', uploadedStateKey: 'k1' });
        expect(await store.getTurn('t1')).toEqual(turn('t1', { status: 'running', startedAt: at(2), uploadedStateKey: 'k1' }));
        expect(await store.updateTurn('nope', ['queued'], { status: 'starting' })).toBeUndefined();
      });

      it('records the limit that stopped a turn', async () => {
        await store.startTurn(turn('t1'));
        const stopped = await store.updateTurn('t1', ['queued'], { status: 'failed', reason: 'stopped: budget', stoppedBy: 'daily_cost' });
        expect(stopped?.stoppedBy).toBe('daily_cost');
        expect(await store.getTurn('t1')).toMatchObject({ status: 'failed', stoppedBy: 'daily_cost' });
      });

      it("records the digest of the runner's result that ended a turn, with its final state", async () => {
        await store.startTurn(turn('t1'));
        expect((await store.getTurn('t1'))?.resultDigest).toBeNull();
        const ended = await store.updateTurn('t1', ['queued'], { status: 'succeeded', text: 'done', resultDigest: 'sha256-of-the-result' });
        expect(ended?.resultDigest).toBe('sha256-of-the-result');
        expect(await store.getTurn('t1')).toMatchObject({ status: 'succeeded', resultDigest: 'sha256-of-the-result' });
      });

      it('a final turn never changes', async () => {
        await store.startTurn(turn('t1'));
        expect((await store.updateTurn('t1', ['queued'], { status: 'succeeded', text: 'done' }))?.status).toBe('succeeded');
        expect(await store.updateTurn('t1', UNFINISHED, { status: 'failed', reason: 'late' })).toBeUndefined();
        expect(await store.getTurn('t1')).toMatchObject({ status: 'succeeded', text: 'done', reason: null });
      });

      it('of 10 concurrent writers moving a running turn to a final state exactly one wins', async () => {
        await store.startTurn(turn('t1', { status: 'running' }));
        const finals: TurnStatus[] = ['succeeded', 'failed', 'cancelled', 'timed_out'];
        const results = await Promise.all(
          Array.from({ length: 10 }, (_, i) =>
            store.updateTurn('t1', ['running'], { status: finals[i % finals.length], reason: `writer ${i}`, finishedAt: at(10 + i) }),
          ),
        );
        const won = results.filter((result) => result !== undefined);
        expect(won).toHaveLength(1);
        expect(await store.getTurn('t1')).toEqual(won[0]);
        expect(await store.listUnfinishedTurns()).toEqual([]);
        expect(await store.startTurn(turn('t2', { createdAt: at(30) }))).toEqual({ started: true });
      });

      it('adds metered usage, every concurrent addition counted', async () => {
        await store.startTurn(turn('t1'));
        const usage = { inputTokens: 10, outputTokens: 2, cacheCreationInputTokens: 3, cacheReadInputTokens: 4, modelCalls: 1 };
        await Promise.all(Array.from({ length: 10 }, (_, i) => store.addUsage(turn('t1'), usage, i % 2 === 0 ? 0.5 : 0.25)));
        expect(await store.getTurn('t1')).toMatchObject({
          usage: { inputTokens: 100, outputTokens: 20, cacheCreationInputTokens: 30, cacheReadInputTokens: 40, modelCalls: 10 },
          costUsd: 3.75,
          status: 'queued',
        });
      });
    });

    describe('limits and the daily ledger', () => {
      /** Start options with a quota: no limits but these. */
      const limits = (overrides: Partial<Quota>): { quota: Quota } => ({ quota: { ...NO_LIMITS, ...overrides } });
      const conversations = async (n: number, userId = 'u1') => {
        for (let i = 0; i < n; i++) await store.createConversation(conversation(`${userId}-c${i}`, { userId }));
      };
      const usage = { inputTokens: 100, outputTokens: 20, cacheCreationInputTokens: 30, cacheReadInputTokens: 1000, modelCalls: 1 };

      it('of 20 concurrent starts by one user, exactly the running limit start; the others name the limit', async () => {
        await conversations(20);
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) => store.startTurn(turn(`t${i}`, { conversationId: `u1-c${i}` }), limits({ runningTurnsPerUser: 2 }))),
        );
        expect(results.filter((r) => r.started)).toHaveLength(2);
        for (const result of results.filter((r) => !r.started)) {
          expect(result).toMatchObject({ started: false, limitHit: { limit: 'running_turns', max: 2, retryAfterSeconds: 5 } });
        }
        expect(await store.listUnfinishedTurns()).toHaveLength(2);
        expect((await store.getUsage('u1', new Date(at(1)))).runningTurns).toBe(2);
      });

      it('a finished turn frees its slot; a turn that starts final takes none', async () => {
        await conversations(3);
        const limit = limits({ runningTurnsPerUser: 1 });
        expect(await store.startTurn(turn('t0', { conversationId: 'u1-c0' }), limit)).toEqual({ started: true });
        expect(await store.startTurn(turn('t1', { conversationId: 'u1-c1' }), limit)).toMatchObject({ limitHit: { limit: 'running_turns' } });
        await store.updateTurn('t0', ['queued'], { status: 'failed', reason: 'x' });
        expect((await store.getUsage('u1', new Date(at(1)))).runningTurns).toBe(0);
        expect(await store.startTurn(turn('t1', { conversationId: 'u1-c1', status: 'succeeded' }), limit)).toEqual({ started: true });
        expect(await store.startTurn(turn('t2', { conversationId: 'u1-c2' }), limit)).toEqual({ started: true });
      });

      it('counts starts in a sliding minute and says when the next one is allowed', async () => {
        await conversations(5);
        const limit = limits({ turnsPerMinute: 3 });
        for (const [i, second] of [0, 10, 20].entries()) {
          expect(await store.startTurn(turn(`t${i}`, { conversationId: `u1-c${i}`, createdAt: at(second) }), limit)).toEqual({ started: true });
        }
        expect(await store.startTurn(turn('t3', { conversationId: 'u1-c3', createdAt: at(30) }), limit)).toMatchObject({
          started: false,
          limitHit: { limit: 'turns_per_minute', max: 3, retryAfterSeconds: 30 },
        });
        expect(await store.startTurn(turn('t3', { conversationId: 'u1-c3', createdAt: at(61) }), limit)).toEqual({ started: true });
        expect(await store.startTurn(turn('t4', { conversationId: 'u1-c4', createdAt: at(62) }), limit)).toMatchObject({
          limitHit: { limit: 'turns_per_minute' },
        });
      });

      it('counts an empty conversation created under a quota as a start of the minute, shared with turns', async () => {
        const limit = limits({ turnsPerMinute: 2 });
        const created = (id: string, second: number) => store.createConversation(conversation(id, { createdAt: at(second) }), limit.quota);
        expect(await created('u1-e0', 0)).toEqual({ created: true });
        expect(await created('u1-e1', 10)).toEqual({ created: true });
        expect(await created('u1-e2', 20)).toEqual({
          created: false,
          limitHit: expect.objectContaining({ limit: 'turns_per_minute', max: 2, retryAfterSeconds: 40 }),
        });
        expect(await store.getConversation('u1-e2')).toBeUndefined();
        expect(await store.startTurn(turn('t0', { conversationId: 'u1-e0', createdAt: at(30) }), limit)).toMatchObject({
          limitHit: { limit: 'turns_per_minute' },
        });
        expect(await created('u1-e2', 61)).toEqual({ created: true });
        expect((await store.getUsage('u1', new Date(at(61)))).ledger.turns).toBe(0);
      });

      it('names a conversation with the turn that asks it to, and only that one', async () => {
        expect(await store.startTurn(turn('t0'), { title: 'named by its first prompt' })).toEqual({ started: true });
        await store.updateTurn('t0', ['queued'], { status: 'failed', reason: 'x' });
        expect(await store.startTurn(turn('t1'))).toEqual({ started: true });
        expect((await store.getConversation('c1'))?.title).toBe('named by its first prompt');
      });

      it('counts changes of workspace files in a minute of their own, which turns do not share', async () => {
        const { quota } = limits({ fileChangesPerMinute: 2, turnsPerMinute: 1 });
        expect(await store.admitFileChange('u1', quota, new Date(at(0)))).toEqual({ admitted: true });
        expect(await store.admitFileChange('u1', quota, new Date(at(10)))).toEqual({ admitted: true });
        expect(await store.admitFileChange('u1', quota, new Date(at(20)))).toEqual({
          admitted: false,
          limitHit: expect.objectContaining({ limit: 'file_changes_per_minute', max: 2, retryAfterSeconds: 40 }),
        });
        expect(await store.admitFileChange('u2', quota, new Date(at(20)))).toEqual({ admitted: true });
        expect(await store.startTurn(turn('t0', { createdAt: at(21) }), { quota })).toEqual({ started: true });
        expect(await store.admitFileChange('u1', quota, new Date(at(61)))).toEqual({ admitted: true });
      });

      it('a final turn whose sandbox may not be gone still holds its running slot, until that is seen', async () => {
        for (const user of ['u1', 'u2']) await conversations(2, user);
        const limit = limits({ runningTurnsPerUser: 1, runningSandboxes: 1 });
        expect(await store.startTurn(turn('a', { conversationId: 'u1-c0' }), limit)).toEqual({ started: true });
        await store.updateTurn('a', ['queued'], { status: 'succeeded', holdsSandbox: true });
        expect(await store.startTurn(turn('b', { conversationId: 'u1-c1' }), limit)).toMatchObject({ limitHit: { limit: 'running_turns' } });
        expect(await store.startTurn(turn('c', { userId: 'u2', conversationId: 'u2-c0' }), limit)).toMatchObject({
          limitHit: { limit: 'running_sandboxes' },
        });
        expect((await store.getUsage('u1', new Date(at(1)))).runningTurns).toBe(1);
        expect(ids(await store.listTurnsHoldingSandboxes())).toEqual(['a']);
        expect(ids(await store.listTurnsHoldingSandboxes('u2'))).toEqual([]);
        expect(await store.listUnfinishedTurns()).toEqual([]);
        const released = await store.updateTurn('a', ['succeeded'], { holdsSandbox: false });
        expect(released).toMatchObject({ status: 'succeeded', holdsSandbox: false });
        expect(await store.listTurnsHoldingSandboxes()).toEqual([]);
        expect(await store.startTurn(turn('b', { conversationId: 'u1-c1' }), limit)).toEqual({ started: true });
      });

      it('caps the sandboxes running across all users', async () => {
        for (const user of ['u1', 'u2', 'u3']) await conversations(1, user);
        const limit = limits({ runningSandboxes: 2 });
        expect(await store.startTurn(turn('a', { userId: 'u1', conversationId: 'u1-c0' }), limit)).toEqual({ started: true });
        expect(await store.startTurn(turn('b', { userId: 'u2', conversationId: 'u2-c0' }), limit)).toEqual({ started: true });
        expect(await store.startTurn(turn('c', { userId: 'u3', conversationId: 'u3-c0' }), limit)).toMatchObject({
          limitHit: { limit: 'running_sandboxes', max: 2 },
        });
        await store.updateTurn('a', ['queued'], { status: 'cancelled', reason: 'x' });
        expect(await store.startTurn(turn('c', { userId: 'u3', conversationId: 'u3-c0' }), limit)).toEqual({ started: true });
      });

      it('caps the sandboxes started in any minute across all users, finished or not, and says when the next may start', async () => {
        for (const user of ['u1', 'u2', 'u3']) await conversations(2, user);
        const limit = limits({ sandboxStartsPerMinute: 2 });
        expect(await store.startTurn(turn('a', { userId: 'u1', conversationId: 'u1-c0', createdAt: at(0) }), limit)).toEqual({ started: true });
        await store.updateTurn('a', ['queued'], { status: 'failed', reason: 'x' });
        expect(await store.startTurn(turn('b', { userId: 'u2', conversationId: 'u2-c0', createdAt: at(20) }), limit)).toEqual({ started: true });
        expect(await store.startTurn(turn('c', { userId: 'u3', conversationId: 'u3-c0', createdAt: at(30) }), limit)).toMatchObject({
          started: false,
          limitHit: { limit: 'sandbox_starts_per_minute', max: 2, retryAfterSeconds: 30 },
        });
        expect(await store.startTurn(turn('c', { userId: 'u3', conversationId: 'u3-c0', createdAt: at(61) }), limit)).toEqual({ started: true });
        expect(await store.startTurn(turn('d', { userId: 'u1', conversationId: 'u1-c1', createdAt: at(62) }), limit)).toMatchObject({
          limitHit: { limit: 'sandbox_starts_per_minute' },
        });
      });

      it('of 10 concurrent starts by different users, exactly the per-minute start limit start', async () => {
        const users = Array.from({ length: 10 }, (_, i) => `s${i}`);
        for (const user of users) await conversations(1, user);
        const results = await Promise.all(
          users.map((user) =>
            store.startTurn(turn(`t-${user}`, { userId: user, conversationId: `${user}-c0` }), limits({ sandboxStartsPerMinute: 3 })),
          ),
        );
        expect(results.filter((r) => r.started)).toHaveLength(3);
      });

      it("keeps the user's day: turns, tokens and cost, every concurrent addition counted, separate per user", async () => {
        const now = new Date();
        await conversations(1);
        await conversations(1, 'u2');
        await store.startTurn(turn('t1', { conversationId: 'u1-c0', createdAt: now.toISOString() }));
        await store.startTurn(turn('t2', { userId: 'u2', conversationId: 'u2-c0', createdAt: now.toISOString() }));
        const ledgers = await Promise.all(Array.from({ length: 10 }, () => store.addUsage(turn('t1'), usage, 0.25)));
        // Budget tokens leave out cache reads: 100 + 30 + 20 per call.
        expect(Math.max(...ledgers.map((l) => l.tokens))).toBe(1500);
        const { ledger, runningTurns } = await store.getUsage('u1', now);
        expect(ledger).toMatchObject({ day: now.toISOString().slice(0, 10), turns: 1, tokens: 1500, costUsd: 2.5 });
        expect(runningTurns).toBe(1);
        expect((await store.getUsage('u2', now)).ledger).toMatchObject({ turns: 1, tokens: 0, costUsd: 0 });
        const tomorrow = new Date(now.getTime() + 24 * 3600_000);
        expect((await store.getUsage('u1', tomorrow)).ledger).toMatchObject({ turns: 0, tokens: 0, costUsd: 0 });
      });

      it('refuses starts once a daily budget is used up, until the next UTC day, deleted conversations or not', async () => {
        const now = new Date();
        await conversations(3);
        const limit = limits({ dailyTokens: 1000 });
        expect(await store.startTurn(turn('t1', { conversationId: 'u1-c0', createdAt: now.toISOString() }), limit)).toEqual({ started: true });
        const ledger = await store.addUsage(turn('t1'), { ...usage, inputTokens: 900 }, 1);
        expect(ledger.tokens).toBe(950);
        await store.updateTurn('t1', ['queued'], { status: 'succeeded' });
        expect(await store.startTurn(turn('t2', { conversationId: 'u1-c1', createdAt: now.toISOString() }), limit)).toEqual({ started: true });
        await store.addUsage(turn('t2'), usage, 0);
        await store.updateTurn('t2', ['queued'], { status: 'succeeded' });
        await store.deleteConversation('u1-c0');
        await store.deleteConversation('u1-c1');
        const refused = await store.startTurn(turn('t3', { conversationId: 'u1-c2', createdAt: now.toISOString() }), limit);
        expect(refused).toMatchObject({ started: false, limitHit: { limit: 'daily_tokens', max: 1000 } });
        const untilMidnight = (Date.parse(`${now.toISOString().slice(0, 10)}T00:00:00Z`) + 86_400_000 - now.getTime()) / 1000;
        expect(!refused.started && 'limitHit' in refused && Math.abs(refused.limitHit.retryAfterSeconds - untilMidnight)).toBeLessThan(5);
        const tomorrow = new Date(now.getTime() + 24 * 3600_000).toISOString();
        expect(await store.startTurn(turn('t3', { conversationId: 'u1-c2', createdAt: tomorrow }), limit)).toEqual({ started: true });
      });

      it('usage metered for a turn deleted meanwhile still counts for its user', async () => {
        const now = new Date();
        await conversations(1);
        await store.startTurn(turn('t1', { conversationId: 'u1-c0', createdAt: now.toISOString() }));
        await store.deleteConversation('u1-c0');
        expect((await store.addUsage(turn('t1'), usage, 0.5)).tokens).toBe(150);
        expect((await store.getUsage('u1', now)).ledger).toMatchObject({ tokens: 150, costUsd: 0.5 });
        expect(await store.getTurn('t1')).toBeUndefined();
      });

      it("a deleted conversation's unfinished turn frees its slot", async () => {
        await conversations(2);
        const limit = limits({ runningTurnsPerUser: 1, runningSandboxes: 1 });
        expect(await store.startTurn(turn('t0', { conversationId: 'u1-c0' }), limit)).toEqual({ started: true });
        await store.deleteConversation('u1-c0');
        expect(await store.startTurn(turn('t1', { conversationId: 'u1-c1' }), limit)).toEqual({ started: true });
      });
    });

    describe('egress counters', () => {
      const caps = (overrides: Partial<EgressCaps> = {}): EgressCaps => ({
        maxConnectionsPerTurn: 5,
        maxBytesPerTurn: 1000,
        dailyBytesPerUser: null,
        ...overrides,
      });
      const conversations = async (n: number) => {
        for (let i = 0; i < n; i++) await store.createConversation(conversation(`u1-c${i}`));
      };
      const egress = (bytes: number): NewTurnEvent => ({
        type: 'egress',
        data: { host: 'h.test', port: 443, allowed: true, bytesOut: bytes, bytesIn: 0, durationMs: 1 },
      });

      it('of 20 concurrent connections of one turn, exactly its cap open; the others say why', async () => {
        await store.startTurn(turn('t1'));
        const results = await Promise.all(Array.from({ length: 20 }, () => store.openEgress(turn('t1'), caps(), new Date())));
        expect(results.filter((r) => r?.admitted)).toHaveLength(5);
        expect(results.filter((r) => r?.admitted === false)).toHaveLength(15);
        expect(results.find((r) => r?.admitted === false)).toEqual({
          admitted: false,
          reason: 'this turn has opened its 5 connections out; no more are allowed',
        });
        expect(await store.getTurn('t1')).toMatchObject({ egressConnections: 5, egressBytes: 0 });
      });

      it("counts recorded bytes on the turn and the user's day, and admits a connection to what is left of the tighter cap", async () => {
        await store.startTurn(turn('t1'));
        await Promise.all(Array.from({ length: 4 }, () => store.recordEgress(turn('t1'), [egress(100)], 100)));
        expect(await store.getTurn('t1')).toMatchObject({ egressBytes: 400 });
        expect((await store.getUsage('u1', new Date())).ledger.egressBytes).toBe(400);
        expect((await store.listEvents('t1', 0)).filter((e) => e.type === 'egress')).toHaveLength(4);
        expect(await store.openEgress(turn('t1'), caps(), new Date())).toMatchObject({
          admitted: true,
          turn: { bytes: 600 },
          day: { bytes: Number.POSITIVE_INFINITY },
        });
        expect(await store.openEgress(turn('t1'), caps({ dailyBytesPerUser: 500 }), new Date())).toEqual({
          admitted: true,
          turn: { bytes: 600, over: 'cut: this turn went over its 1000 bytes out and in' },
          day: { bytes: 100, over: 'cut: the daily egress budget of 500 bytes is used up' },
        });
        expect(await store.openEgress(turn('t1'), caps({ dailyBytesPerUser: 400 }), new Date())).toEqual({
          admitted: false,
          reason: 'the daily egress budget of 400 bytes is used up (400 carried today, UTC)',
        });
        expect(await store.openEgress(turn('t1'), caps({ maxBytesPerTurn: 400 }), new Date())).toMatchObject({
          admitted: false,
          reason: 'this turn has carried its 400 bytes out and in',
        });
      });

      it("a new UTC day starts the user's egress from zero; another turn of the user shares the day", async () => {
        await conversations(1);
        await store.startTurn(turn('t1'));
        await store.startTurn(turn('t2', { conversationId: 'u1-c0' }));
        await store.recordEgress(turn('t1'), [egress(300)], 300);
        const day = caps({ dailyBytesPerUser: 300 });
        expect(await store.openEgress(turn('t2'), day, new Date())).toMatchObject({ admitted: false });
        expect(await store.openEgress(turn('t2'), day, new Date(Date.now() + 24 * 3600_000))).toMatchObject({ admitted: true, day: { bytes: 300 } });
      });

      it('a final turn opens nothing, and its late connection counts its bytes but adds no event after the result', async () => {
        await store.startTurn(turn('t1'));
        await store.updateTurn('t1', UNFINISHED, { status: 'succeeded' });
        expect(await store.openEgress(turn('t1'), caps(), new Date())).toBeUndefined();
        await store.recordEgress(turn('t1'), [egress(50)], 50);
        expect(await store.getTurn('t1')).toMatchObject({ egressBytes: 50 });
        expect((await store.getUsage('u1', new Date())).ledger.egressBytes).toBe(50);
        expect(await store.listEvents('t1', 0)).toEqual([]);
      });

      it('the bytes of a connection whose turn was deleted still count for its user', async () => {
        await conversations(1);
        await store.startTurn(turn('t1', { conversationId: 'u1-c0' }));
        await store.deleteConversation('u1-c0');
        await store.recordEgress(turn('t1'), [egress(70)], 70);
        expect((await store.getUsage('u1', new Date())).ledger.egressBytes).toBe(70);
        expect(await store.getTurn('t1')).toBeUndefined();
      });

      it('keeps egress events apart from the budget of progress events: they neither use it nor are dropped once it is used up', async () => {
        await store.startTurn(turn('t1'));
        const budget = { maxEvents: 2, maxBytes: 1_000_000 };
        for (let i = 0; i < 3; i++) await store.recordEgress(turn('t1'), [egress(10)], 10);
        await store.appendEvents('t1', [text('a'), text('b')], budget);
        await store.appendEvents('t1', [text('c')], budget);
        await store.recordEgress(turn('t1'), [egress(10)], 10);
        expect((await store.listEvents('t1', 0)).map((e) => e.type)).toEqual([
          'egress',
          'egress',
          'egress',
          'text',
          'text',
          'events_dropped',
          'egress',
        ]);
        expect(await store.getTurn('t1')).toMatchObject({ egressBytes: 40 });
      });
    });

    describe('listing turns', () => {
      it("lists a conversation's turns in creation order", async () => {
        for (const [id, second] of [
          ['tb', 1],
          ['ta', 2],
          ['tc', 3],
        ] as const) {
          await store.startTurn(turn(id, { createdAt: at(second) }));
          await store.updateTurn(id, ['queued'], { status: 'succeeded' });
        }
        await store.createConversation(conversation('c2'));
        await store.startTurn(turn('elsewhere', { conversationId: 'c2' }));
        expect(ids(await store.listTurns('c1'))).toEqual(['tb', 'ta', 'tc']);
        expect(await store.listTurns('nope')).toEqual([]);
      });

      it('lists the unfinished turns of every conversation', async () => {
        const statuses: TurnStatus[] = ['queued', 'starting', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out'];
        for (const [i, status] of statuses.entries()) {
          await store.createConversation(conversation(`c-${status}`));
          await store.startTurn(turn(`t-${status}`, { conversationId: `c-${status}`, status, createdAt: at(i) }));
        }
        expect(ids(await store.listUnfinishedTurns()).sort()).toEqual(['t-queued', 't-running', 't-starting']);
      });

      it("lists one user's unfinished turns", async () => {
        for (const user of ['u1', 'u2']) {
          await store.createConversation(conversation(`c-${user}`, { userId: user }));
          await store.startTurn(turn(`t-${user}`, { userId: user, conversationId: `c-${user}` }));
        }
        expect(ids(await store.listUnfinishedTurns('u2'))).toEqual(['t-u2']);
      });
    });

    describe('watching (how one instance learns what another wrote)', () => {
      /** Collects what a watch delivers; `until` resolves once the predicate holds. */
      function collector<T>() {
        const seen: T[] = [];
        const waiters: Array<{ test: (all: T[]) => boolean; resolve: () => void }> = [];
        return {
          seen,
          push: (value: T) => {
            seen.push(value);
            for (const w of waiters.filter((w) => w.test(seen))) w.resolve();
          },
          until: (test: (all: T[]) => boolean) => (test(seen) ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ test, resolve }))),
        };
      }

      it("delivers a turn's result once, when it is written, and nothing else of the turn", async () => {
        await store.startTurn(turn('t1', { status: 'running' }));
        const results = collector<TurnEvent>();
        const stop = store.watchResult('t1', results.push);
        await store.appendEvents('t1', [
          { type: 'text', data: { text: 'working' } },
          { type: 'status', data: { status: 'running' } },
        ]);
        await store.addUsage(turn('t1'), { ...emptyUsage(), inputTokens: 1 }, 0);
        await store.updateTurn('t1', ['running'], { status: 'succeeded', text: 'done' }, { events: (t) => [result(t)] });
        await results.until((all) => all.length > 0);
        await new Promise((resolve) => setTimeout(resolve, 300));
        expect(results.seen).toEqual([
          expect.objectContaining({ turnId: 't1', seq: 3, type: 'result', data: expect.objectContaining({ status: 'succeeded', text: 'done' }) }),
        ]);
        stop();
      });

      it('delivers a result written before the watch began at once', async () => {
        await store.startTurn(turn('t1', { status: 'running' }));
        await store.updateTurn('t1', ['running'], { status: 'failed', reason: 'x' }, { events: (t) => [result(t)] });
        const results = collector<TurnEvent>();
        const stop = store.watchResult('t1', results.push);
        await results.until((all) => all.length > 0);
        expect(results.seen.map((e) => e.data)).toMatchObject([{ status: 'failed' }]);
        stop();
      });

      it('a stopped watch hears nothing more', async () => {
        await store.startTurn(turn('t1', { status: 'running' }));
        const results = collector<TurnEvent>();
        store.watchResult('t1', results.push)();
        await store.updateTurn('t1', ['running'], { status: 'succeeded' }, { events: (t) => [result(t)] });
        await new Promise((resolve) => setTimeout(resolve, 300));
        expect(results.seen).toEqual([]);
      });

      it('replays events after a number, then delivers appends in order, each once', async () => {
        await store.startTurn(turn('t1'));
        await store.appendEvents('t1', [text('a'), text('b'), text('c')]);
        const events = collector<TurnEvent>();
        const stop = store.watchEvents('t1', 1, events.push);
        await store.appendEvents('t1', [text('d')]);
        await store.appendEvents('t1', [text('e'), text('f')]);
        await events.until((all) => all.length >= 5);
        stop();
        expect(events.seen.map((e) => [e.seq, e.data])).toEqual([
          [2, { text: 'b' }],
          [3, { text: 'c' }],
          [4, { text: 'd' }],
          [5, { text: 'e' }],
          [6, { text: 'f' }],
        ]);
      });
    });

    describe('events', () => {
      /** Appends to a turn that must take them. */
      const append = async (turnId: string, events: NewTurnEvent[]): Promise<TurnEvent[]> => {
        const appended = await store.appendEvents(turnId, events);
        if (appended === undefined) throw new Error(`turn ${turnId} refused events`);
        return appended;
      };

      it('numbers appended events 1..n across calls and lists those after a number', async () => {
        await store.startTurn(turn('t1'));
        expect(await store.appendEvents('t1', [])).toEqual([]);
        const first = await append('t1', [
          { type: 'status', data: { status: 'running' } },
          // More than a step holds: the store keeps any JSON data as it was given.
          { type: 'tool_use', data: { name: 'Bash', summary: 'ls', nested: { list: [1, [2, 3]], flag: true, none: null } } as ToolUseData },
        ]);
        expect(first.map((event) => [event.turnId, event.seq, event.type])).toEqual([
          ['t1', 1, 'status'],
          ['t1', 2, 'tool_use'],
        ]);
        const second = await append('t1', [{ type: 'text', data: { text: 'hi' } }]);
        expect(second.map((event) => event.seq)).toEqual([3]);

        const all = await store.listEvents('t1', 0);
        expect(all).toEqual([...first, ...second]);
        expect(all[1]?.data).toEqual({ name: 'Bash', summary: 'ls', nested: { list: [1, [2, 3]], flag: true, none: null } });
        expect(Number.isNaN(Date.parse(all[0]!.at))).toBe(false);
        expect((await store.listEvents('t1', 1)).map((event) => event.seq)).toEqual([2, 3]);
        expect(await store.listEvents('t1', 3)).toEqual([]);
        expect(await store.listEvents('nope', 0)).toEqual([]);
      });

      it('keeps a turn within its event budget: the first cut batch ends with one notice, later ones keep nothing', async () => {
        await store.startTurn(turn('t1'));
        const budget = { maxEvents: 4, maxBytes: 1000 };
        const step = (n: number) => text(`step ${n}`);
        expect((await store.appendEvents('t1', [step(1), step(2)], budget))?.map((e) => e.type)).toEqual(['text', 'text']);
        const cut = await store.appendEvents('t1', [step(3), step(4), step(5)], budget);
        expect(cut?.map((e) => [e.seq, e.type])).toEqual([
          [3, 'text'],
          [4, 'text'],
          [5, 'events_dropped'],
        ]);
        expect(cut?.[2]?.data).toMatchObject({ maxEvents: 4, maxBytes: 1000 });
        expect(await store.appendEvents('t1', [step(6)], budget)).toEqual([]);
        expect((await store.listEvents('t1', 0)).map((e) => e.type)).toEqual(['text', 'text', 'text', 'text', 'events_dropped']);
        // The turn's own status and result events are not the runner's to budget.
        const done = await store.updateTurn('t1', ['queued'], { status: 'failed' }, { events: (t) => [result(t)] });
        expect(done?.status).toBe('failed');
        expect((await store.listEvents('t1', 0)).at(-1)?.type).toBe('result');
      });

      it('keeps text deltas to half the budget, dropped past it without a notice, so that the steps keep the other half', async () => {
        await store.startTurn(turn('t1'));
        const budget = { maxEvents: 6, maxBytes: 1000 };
        const delta = (n: number) => ({ type: 'text_delta' as const, data: { text: `part ${n} ` } });
        const kept = await store.appendEvents('t1', [delta(1), delta(2), delta(3), delta(4), text('whole'), delta(5)], budget);
        expect(kept?.map((e) => e.type)).toEqual(['text_delta', 'text_delta', 'text_delta', 'text']);
        const steps = await store.appendEvents('t1', [text('a'), text('b'), text('c')], budget);
        expect(steps?.map((e) => e.type)).toEqual(['text', 'text', 'events_dropped']);
        // And half its bytes.
        await store.createConversation(conversation('c2'));
        await store.startTurn(turn('t2', { conversationId: 'c2' }));
        const bytes = { maxEvents: 100, maxBytes: 200 };
        const long = { type: 'text_delta' as const, data: { text: 'y'.repeat(80) } };
        expect((await store.appendEvents('t2', [long, long, text('x'.repeat(80))], bytes))?.map((e) => e.type)).toEqual(['text_delta', 'text']);
      });

      it("counts the bytes of a turn's events against its budget", async () => {
        await store.startTurn(turn('t1'));
        const budget = { maxEvents: 100, maxBytes: 250 };
        const big = text('x'.repeat(100));
        const kept = await store.appendEvents('t1', [big, big, big], budget);
        expect(kept?.map((e) => e.type)).toEqual(['text', 'text', 'events_dropped']);
      });

      it("numbers each turn's events on their own", async () => {
        await store.createConversation(conversation('c2'));
        await store.startTurn(turn('t1'));
        await store.startTurn(turn('t2', { conversationId: 'c2' }));
        await store.appendEvents('t1', [text(''), text('')]);
        expect((await append('t2', [text('')]))[0]?.seq).toBe(1);
      });

      it('concurrent appends never share a number', async () => {
        await store.startTurn(turn('t1'));
        const batches = await Promise.all(Array.from({ length: 5 }, (_, i) => append('t1', [text(`${i}: part 0`), text(`${i}: part 1`)])));
        for (const batch of batches) expect(batch[1]!.seq).toBe(batch[0]!.seq + 1);
        const seqs = batches
          .flat()
          .map((event) => event.seq)
          .sort((a, b) => a - b);
        expect(seqs).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        expect((await store.listEvents('t1', 0)).map((event) => event.seq)).toEqual(seqs);
      });

      it('refuses events for a turn that does not exist', async () => {
        expect(await store.appendEvents('nope', [text('')])).toBeUndefined();
        expect(await store.listEvents('nope', 0)).toEqual([]);
      });

      it("refuses events for a final turn; a turn's update carries its own events, numbered after the others", async () => {
        await store.startTurn(turn('t1'));
        await append('t1', [{ type: 'text', data: { text: 'working' } }]);
        const started = await store.updateTurn(
          't1',
          ['queued'],
          { status: 'starting' },
          { events: (t) => [{ type: 'status', data: { status: t.status } }] },
        );
        expect(started?.status).toBe('starting');
        // An update that does not apply records nothing.
        await store.updateTurn('t1', ['queued'], { status: 'running' }, { events: () => [text('never recorded')] });
        await store.updateTurn('t1', ['starting'], { status: 'succeeded', text: 'done' }, { events: (t) => [result(t)] });
        expect(await store.appendEvents('t1', [{ type: 'text', data: { text: 'too late' } }])).toBeUndefined();
        const events = await store.listEvents('t1', 0);
        expect(events.map((e) => [e.seq, e.type, e.data])).toEqual([
          [1, 'text', { text: 'working' }],
          [2, 'status', { status: 'starting' }],
          [3, 'result', expect.objectContaining({ text: 'done' })],
        ]);
      });
    });
  });
}

storeContract(sqlite());
storeContract(firestore());
