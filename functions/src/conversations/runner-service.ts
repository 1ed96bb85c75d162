import type { Readable } from 'node:stream';
import { BlobTooLargeError } from '../blobs/blob-store.js';
import type { AgentEvent, RunnerResult, RunnerTurn } from '../contract/runner.js';
import { isFinal, type Usage } from '../contract/turn.js';
import type { Turn } from '../store/conversation-store.js';
import { ServiceError } from './errors.js';
import { budgetHit } from './quota.js';
import type { TurnLifecycle } from './turn-lifecycle.js';

/**
 * What a sandbox may ask, holding only its turn token: its turn, its conversation's state, a
 * place for the new state, progress and the result. Every call checks the token first.
 */
export class RunnerService {
  constructor(private readonly lifecycle: TurnLifecycle) {}

  private get deps() {
    return this.lifecycle.deps;
  }

  /** Checks a turn token: valid signature, not expired, bound to `turnId`, turn not final. */
  async authenticateRunner(token: string | undefined, turnId?: string): Promise<Turn> {
    const claims = token === undefined ? undefined : this.deps.tokens.verify(token);
    if (claims === undefined || (turnId !== undefined && claims.turnId !== turnId)) {
      throw new ServiceError('unauthenticated', 'invalid or expired turn token');
    }
    const turn = await this.deps.store.getTurn(claims.turnId);
    if (turn === undefined || turn.conversationId !== claims.conversationId || turn.userId !== claims.userId) {
      throw new ServiceError('unauthenticated', 'invalid or expired turn token');
    }
    if (isFinal(turn.status)) throw new ServiceError('unauthenticated', `the turn is already ${turn.status}`);
    return turn;
  }

  async beginRun(turn: Turn): Promise<RunnerTurn> {
    const running =
      (await this.deps.store.updateTurn(turn.id, ['starting'], { status: 'running', startedAt: new Date().toISOString() })) ??
      (await this.lifecycle.requireTurn(turn.id));
    if (running.status !== 'running') throw new ServiceError('conflict', `the turn is ${running.status}`);
    if (running.startedAt !== turn.startedAt) await this.lifecycle.record(turn.id, [{ type: 'status', data: { status: 'running' } }]);
    const conversation = await this.deps.store.getConversation(turn.conversationId);
    return {
      turnId: turn.id,
      conversationId: turn.conversationId,
      prompt: turn.prompt,
      sessionId: conversation?.sessionId ?? null,
      hasState: conversation?.stateKey != null,
      model: this.deps.agentModel ?? null,
      maxStateBytes: this.deps.limits.maxStateBytes,
    };
  }

  async openState(turn: Turn): Promise<Readable | undefined> {
    const conversation = await this.deps.store.getConversation(turn.conversationId);
    return conversation?.stateKey ? this.deps.blobs.get(conversation.stateKey) : undefined;
  }

  /** Stores the state the runner uploads; it becomes the conversation's only when the turn succeeds. */
  async saveState(turn: Turn, body: Readable): Promise<void> {
    const key = `conversations/${turn.conversationId}/state-${turn.id}.tar.gz`;
    try {
      await this.deps.blobs.put(key, body, this.deps.limits.maxStateBytes);
    } catch (error) {
      if (error instanceof BlobTooLargeError) {
        throw new ServiceError('too_large', `state archive over the limit of ${error.limitBytes} bytes`);
      }
      throw error;
    }
    const updated = await this.deps.store.updateTurn(turn.id, ['running'], { uploadedStateKey: key });
    if (updated === undefined) await this.deps.blobs.delete(key); // the turn ended meanwhile
  }

  async finishFromRunner(turn: Turn, result: RunnerResult): Promise<Turn> {
    if (result.outcome === 'failed') {
      return this.lifecycle.finish(turn.id, 'failed', { reason: result.reason, text: result.text ?? null });
    }
    const fresh = await this.lifecycle.requireTurn(turn.id);
    if (result.stateSaved && fresh.uploadedStateKey === null) {
      return this.lifecycle.finish(turn.id, 'failed', { reason: 'the runner reported a saved state that never arrived' });
    }
    // One turn runs at a time in a conversation, so its state cannot change under us here.
    const previous = (await this.deps.store.getConversation(turn.conversationId))?.stateKey ?? null;
    const saved = fresh.uploadedStateKey;
    const finished = await this.lifecycle.finish(
      turn.id,
      'succeeded',
      { text: result.text, reason: null },
      saved === null ? undefined : { sessionId: result.sessionId, stateKey: saved },
    );
    if (finished.status === 'succeeded' && saved !== null && previous !== null && previous !== saved) {
      await this.deps.blobs.delete(previous);
    }
    return finished;
  }

  /** The agent's progress, as the runner reports it. */
  async recordAgentEvents(turn: Turn, events: AgentEvent[]): Promise<void> {
    await this.lifecycle.record(
      turn.id,
      events.map(({ type, ...data }) => ({ type, data })),
    );
  }

  /**
   * Adds what the model proxy metered to the turn and to its user's day. A call that takes the
   * user over a daily budget stops the turn there: no later call of it reaches the model, and
   * new turns are refused until the day is over.
   */
  async recordUsage(turn: Turn, usage: Usage, costUsd: number): Promise<void> {
    const ledger = await this.deps.store.addUsage(turn, usage, costUsd);
    const overBudget = budgetHit(ledger, this.deps.quota, new Date());
    if (overBudget !== undefined) await this.lifecycle.stop(turn, 'failed', `stopped: ${overBudget.message}`);
  }
}
