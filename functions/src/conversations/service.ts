import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { BlobTooLargeError, type BlobStore } from '../blobs/blob-store.js';
import type { PostConversationRequest } from '../contract/api.js';
import type { AgentEvent, RunnerResult, RunnerTurn } from '../contract/runner.js';
import { emptyUsage, isFinal, type TurnStatus, type Usage } from '../contract/turn.js';
import { SandboxUnavailableError, type SandboxEnd, type SandboxHandle, type SandboxLauncher } from '../sandbox/launcher.js';
import type { Conversation, ConversationStore, ListCursor, Turn, TurnEvent, TurnPatch } from '../store/conversation-store.js';
import { ServiceError } from './errors.js';
import { TurnBus } from './turn-events.js';
import { titleOf, turnView } from './views.js';
import { statesBefore } from './turn-state.js';
import type { TurnTokens } from './turn-token.js';

export interface ServiceLimits {
  turnTimeoutSeconds: number;
  maxPromptBytes: number;
  maxStateBytes: number;
  memoryMb: number;
}

export interface ServiceDeps {
  store: ConversationStore;
  blobs: BlobStore;
  launcher: SandboxLauncher;
  tokens: TurnTokens;
  limits: ServiceLimits;
  agentModel: string | undefined;
  log: (message: string) => void;
}

/** How long after its deadline a turn with no word from its sandbox is settled anyway. */
const DEADLINE_GRACE_MS = 30_000;
const UNFINISHED: readonly TurnStatus[] = ['queued', 'starting', 'running'];

/**
 * The turn lifecycle: admit a prompt, start its sandbox, serve the runner, settle the turn exactly
 * once whatever happens (result, crash, timeout), and keep the conversation's state consistent.
 * Knows nothing of HTTP.
 */
export class ConversationService {
  private readonly bus = new TurnBus();
  private readonly sandboxes = new Map<string, SandboxHandle>();

  constructor(private readonly deps: ServiceDeps) {}

  // ---- the client's side ----

  async submit(userId: string, request: PostConversationRequest, idempotencyKey?: string): Promise<Turn> {
    const { store, limits } = this.deps;
    const promptBytes = Buffer.byteLength(request.message, 'utf8');
    if (promptBytes > limits.maxPromptBytes) {
      throw new ServiceError('too_large', `message is ${promptBytes} bytes; the limit is ${limits.maxPromptBytes}`);
    }
    if (idempotencyKey !== undefined) {
      const retried = await store.findTurnByIdempotencyKey(userId, idempotencyKey);
      if (retried !== undefined) return retried;
    }
    const now = new Date();
    const conversationId = request.conversationId ?? randomUUID();
    if (request.conversationId !== undefined) {
      await this.ownConversation(userId, request.conversationId);
    } else {
      await store.createConversation({
        id: conversationId,
        userId,
        title: titleOf(request.message),
        createdAt: now.toISOString(),
        updatedAt: now.toISOString(),
        sessionId: null,
        stateKey: null,
      });
    }
    const turn: Turn = {
      id: randomUUID(),
      conversationId,
      userId,
      prompt: request.message,
      status: 'queued',
      reason: null,
      text: null,
      usage: emptyUsage(),
      costUsd: 0,
      createdAt: now.toISOString(),
      startedAt: null,
      finishedAt: null,
      deadlineAt: new Date(now.getTime() + limits.turnTimeoutSeconds * 1000).toISOString(),
      uploadedStateKey: null,
      idempotencyKey: idempotencyKey ?? null,
    };
    const started = await store.startTurn(turn);
    if (!started.started) {
      if (request.conversationId === undefined) await store.deleteConversation(conversationId);
      if ('existingTurnId' in started) return this.requireTurn(started.existingTurnId);
      throw new ServiceError('conflict', 'a turn is already running in this conversation', { activeTurnId: started.activeTurnId });
    }
    await this.startSandbox(turn);
    return this.requireTurn(turn.id);
  }

  async listConversations(userId: string, limit: number, cursor?: string): Promise<{ conversations: Conversation[]; nextCursor: string | null }> {
    const conversations = await this.deps.store.listConversations(userId, limit, cursor === undefined ? undefined : decodeCursor(cursor));
    const last = conversations.at(-1);
    const nextCursor = conversations.length === limit && last !== undefined ? encodeCursor({ updatedAt: last.updatedAt, id: last.id }) : null;
    return { conversations, nextCursor };
  }

  async getConversation(userId: string, conversationId: string): Promise<{ conversation: Conversation; turns: Turn[] }> {
    const conversation = await this.ownConversation(userId, conversationId);
    return { conversation, turns: await this.deps.store.listTurns(conversationId) };
  }

  /** Deletes a conversation with its state; a running turn is cancelled first. */
  async deleteConversation(userId: string, conversationId: string): Promise<void> {
    const { turns } = await this.getConversation(userId, conversationId);
    for (const turn of turns.filter((t) => !isFinal(t.status))) await this.cancelTurn(turn);
    const keys = await this.deps.store.deleteConversation(conversationId);
    for (const key of keys) await this.deps.blobs.delete(key);
  }

  async getTurn(userId: string, conversationId: string, turnId: string): Promise<Turn> {
    await this.ownConversation(userId, conversationId);
    const turn = await this.deps.store.getTurn(turnId);
    if (turn === undefined || turn.conversationId !== conversationId) throw new ServiceError('not_found', `turn ${turnId} not found`);
    return turn;
  }

  /** Stops a running turn's sandbox; the turn ends `cancelled` and the conversation keeps its previous state. */
  async cancel(userId: string, conversationId: string, turnId: string): Promise<Turn> {
    const turn = await this.getTurn(userId, conversationId, turnId);
    if (isFinal(turn.status)) throw new ServiceError('conflict', `the turn is already ${turn.status}`, { status: turn.status });
    return this.cancelTurn(turn);
  }

  /**
   * Replays the turn's events after `afterSeq`, then passes on new ones as they happen. Events
   * that arrive while the replay is read wait for it, so `send` sees each event once, in order.
   */
  async watchEvents(
    userId: string,
    conversationId: string,
    turnId: string,
    afterSeq: number,
    send: (event: TurnEvent) => void,
  ): Promise<{ stop: () => void; resultAlreadySeen: boolean }> {
    await this.getTurn(userId, conversationId, turnId);
    // A client resuming after the final result has nothing more to wait for.
    const lastSeen = afterSeq > 0 ? (await this.deps.store.listEvents(turnId, afterSeq - 1))[0] : undefined;
    if (lastSeen?.seq === afterSeq && lastSeen.type === 'result') return { stop: () => {}, resultAlreadySeen: true };
    let lastSent = afterSeq;
    let pending: TurnEvent[] | undefined = [];
    const deliver = (event: TurnEvent) => {
      if (event.seq <= lastSent) return;
      lastSent = event.seq;
      send(event);
    };
    const stop = this.bus.onEvent(turnId, (event) => (pending ? pending.push(event) : deliver(event)));
    for (const event of await this.deps.store.listEvents(turnId, afterSeq)) deliver(event);
    const waiting = pending;
    pending = undefined;
    for (const event of waiting) deliver(event);
    return { stop, resultAlreadySeen: false };
  }

  /** Resolves with the turn once it is final (it always becomes final: see settleLost). */
  async waitForFinal(turnId: string): Promise<Turn> {
    const current = await this.requireTurn(turnId);
    if (isFinal(current.status)) return current;
    return new Promise<Turn>((resolve) => {
      const lateBy = Date.parse(current.deadlineAt) + DEADLINE_GRACE_MS - Date.now();
      const timer = setTimeout(() => this.inBackground(`settling lost turn ${turnId}`, () => this.settleLost(turnId)), Math.max(0, lateBy));
      const unsubscribe = this.bus.onFinished(turnId, (turn) => {
        clearTimeout(timer);
        resolve(turn);
      });
      // The turn may have finished between the read above and the subscription.
      void this.deps.store.getTurn(turnId).then((turn) => {
        if (turn !== undefined && isFinal(turn.status)) {
          unsubscribe();
          clearTimeout(timer);
          resolve(turn);
        }
      });
    });
  }

  // ---- the runner's side (every call is already authenticated by token) ----

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
      (await this.requireTurn(turn.id));
    if (running.status !== 'running') throw new ServiceError('conflict', `the turn is ${running.status}`);
    if (running.startedAt !== turn.startedAt) await this.record(turn.id, [{ type: 'status', data: { status: 'running' } }]);
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
      return this.finish(turn.id, 'failed', { reason: result.reason, text: result.text ?? null });
    }
    const fresh = await this.requireTurn(turn.id);
    if (result.stateSaved && fresh.uploadedStateKey === null) {
      return this.finish(turn.id, 'failed', { reason: 'the runner reported a saved state that never arrived' });
    }
    const finished = await this.finish(turn.id, 'succeeded', { text: result.text, reason: null });
    if (finished.status === 'succeeded' && finished.uploadedStateKey !== null) {
      const replaced = await this.deps.store.commitState(turn.conversationId, result.sessionId, finished.uploadedStateKey);
      if (replaced !== null && replaced !== finished.uploadedStateKey) await this.deps.blobs.delete(replaced);
    }
    return finished;
  }

  /** The agent's progress, as the runner reports it. */
  async recordAgentEvents(turn: Turn, events: AgentEvent[]): Promise<void> {
    await this.record(
      turn.id,
      events.map(({ type, ...data }) => ({ type, data })),
    );
  }

  /** Adds what the model proxy metered to the turn. */
  async recordUsage(turnId: string, usage: Usage, costUsd: number): Promise<void> {
    await this.deps.store.addUsage(turnId, usage, costUsd);
  }

  // ---- settling what went wrong ----

  /** Turns left unfinished by a previous process can never report: end them with a reason. */
  async settleInterrupted(): Promise<number> {
    const orphans = await this.deps.store.listUnfinishedTurns();
    for (const turn of orphans) {
      await this.finish(turn.id, 'failed', { reason: 'the service restarted while this turn was running; its sandbox was stopped' });
    }
    return orphans.length;
  }

  async close(): Promise<void> {
    await this.deps.launcher.close();
  }

  private async startSandbox(turn: Turn): Promise<void> {
    const token = this.deps.tokens.mint({
      turnId: turn.id,
      conversationId: turn.conversationId,
      userId: turn.userId,
      exp: Math.ceil((Date.parse(turn.deadlineAt) + DEADLINE_GRACE_MS) / 1000),
    });
    let handle: SandboxHandle;
    try {
      handle = await this.deps.launcher.launch({ turnId: turn.id, token, timeoutSeconds: this.deps.limits.turnTimeoutSeconds });
    } catch (error) {
      const message = (error as Error).message;
      this.deps.log(`turn ${turn.id}: sandbox launch failed: ${message}`);
      const failed = await this.finish(turn.id, 'failed', { reason: `the sandbox could not be started: ${message}` });
      if (error instanceof SandboxUnavailableError) {
        throw new ServiceError('unavailable', `no sandbox is available right now: ${message}`, { ...turnView(failed), retryAfterSeconds: 10 });
      }
      return;
    }
    this.sandboxes.set(turn.id, handle);
    if (await this.deps.store.updateTurn(turn.id, ['queued'], { status: 'starting' })) {
      await this.record(turn.id, [{ type: 'status', data: { status: 'starting' } }]);
    }
    this.inBackground(`settling turn ${turn.id}`, async () => {
      const end = await handle.ended;
      this.sandboxes.delete(turn.id);
      await this.settleAfterSandbox(turn.id, end);
    });
  }

  private async settleAfterSandbox(turnId: string, end: SandboxEnd): Promise<void> {
    const { limits } = this.deps;
    switch (end.kind) {
      case 'timed_out':
        await this.finish(turnId, 'timed_out', { reason: `the turn ran past its limit of ${limits.turnTimeoutSeconds} s and was stopped` });
        return;
      case 'cancelled':
        await this.finish(turnId, 'cancelled', { reason: 'the turn was cancelled' });
        return;
      case 'exited': {
        const how = end.signal !== null ? `was killed by ${end.signal}` : end.exitCode !== null ? `exited with code ${end.exitCode}` : 'ended';
        const detail = end.detail !== undefined ? ` (${end.detail})` : '';
        const reason = end.outOfMemory
          ? `the sandbox ran out of memory (limit ${limits.memoryMb} MiB) and ${how} without reporting a result${detail}`
          : `the sandbox ${how} without reporting a result${detail}`;
        await this.finish(turnId, 'failed', { reason });
      }
    }
  }

  private async settleLost(turnId: string): Promise<void> {
    await this.sandboxes.get(turnId)?.cancel();
    await this.finish(turnId, 'failed', { reason: 'no result from the sandbox by the turn deadline' });
  }

  /** The one way a turn becomes final: compare-and-set, then wake the waiters. Idempotent. */
  private async finish(turnId: string, status: TurnStatus, patch: TurnPatch): Promise<Turn> {
    const finished = await this.deps.store.updateTurn(turnId, statesBefore(status).filter((s) => UNFINISHED.includes(s)), {
      ...patch,
      status,
      finishedAt: new Date().toISOString(),
    });
    if (finished === undefined) return this.requireTurn(turnId);
    if (finished.status !== 'succeeded' && finished.uploadedStateKey !== null) {
      await this.deps.blobs.delete(finished.uploadedStateKey);
    }
    await this.record(turnId, [{ type: 'result', data: turnView(finished) }]);
    this.bus.finished(finished);
    return finished;
  }

  private async cancelTurn(turn: Turn): Promise<Turn> {
    const sandbox = this.sandboxes.get(turn.id);
    // Once the stop is asked for, the turn is over: ending it now voids the token, so nothing the
    // sandbox still says in its last moments can count.
    await sandbox?.cancel();
    return this.finish(turn.id, 'cancelled', { reason: 'the turn was cancelled' });
  }

  /** Work no request waits for: a failure is logged, never left to crash the process. */
  private inBackground(what: string, work: () => Promise<void>): void {
    work().catch((error: unknown) => {
      // A conversation deleted while its sandbox wound down has nothing left to settle.
      if (error instanceof ServiceError && error.code === 'not_found') return;
      this.deps.log(`${what} failed: ${(error as Error).stack ?? String(error)}`);
    });
  }

  private async record(turnId: string, events: Array<Pick<TurnEvent, 'type' | 'data'>>): Promise<void> {
    for (const event of await this.deps.store.appendEvents(turnId, events)) this.bus.publish(event);
  }

  private async ownConversation(userId: string, conversationId: string) {
    const conversation = await this.deps.store.getConversation(conversationId);
    // Another user's conversation is "not found": existence is never leaked.
    if (conversation === undefined || conversation.userId !== userId) {
      throw new ServiceError('not_found', `conversation ${conversationId} not found`);
    }
    return conversation;
  }

  private async requireTurn(turnId: string): Promise<Turn> {
    const turn = await this.deps.store.getTurn(turnId);
    if (turn === undefined) throw new ServiceError('not_found', `turn ${turnId} not found`);
    return turn;
  }
}

function encodeCursor(cursor: ListCursor): string {
  return Buffer.from(JSON.stringify([cursor.updatedAt, cursor.id])).toString('base64url');
}

function decodeCursor(text: string): ListCursor {
  try {
    const [updatedAt, id] = JSON.parse(Buffer.from(text, 'base64url').toString('utf8')) as unknown[];
    if (typeof updatedAt === 'string' && typeof id === 'string') return { updatedAt, id };
  } catch {
    // fall through
  }
  throw new ServiceError('invalid_request', 'cursor is not one this API gave out');
}
