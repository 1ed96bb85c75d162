import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { BlobTooLargeError, type BlobStore } from '../blobs/blob-store.js';
import type { PostConversationRequest, TurnView } from '../contract/api.js';
import type { RunnerResult, RunnerTurn } from '../contract/runner.js';
import { emptyUsage, isFinal, type TurnStatus, type Usage } from '../contract/turn.js';
import type { SandboxEnd, SandboxHandle, SandboxLauncher } from '../sandbox/launcher.js';
import type { ConversationStore, Turn, TurnPatch } from '../store/conversation-store.js';
import { ServiceError } from './errors.js';
import { TurnEvents } from './turn-events.js';
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
  private readonly events = new TurnEvents();
  private readonly sandboxes = new Map<string, SandboxHandle>();

  constructor(private readonly deps: ServiceDeps) {}

  // ---- the client's side ----

  async submit(userId: string, request: PostConversationRequest): Promise<Turn> {
    const { store, limits } = this.deps;
    const promptBytes = Buffer.byteLength(request.message, 'utf8');
    if (promptBytes > limits.maxPromptBytes) {
      throw new ServiceError('too_large', `message is ${promptBytes} bytes; the limit is ${limits.maxPromptBytes}`);
    }
    const now = new Date();
    const conversationId = request.conversationId ?? randomUUID();
    if (request.conversationId !== undefined) {
      await this.ownConversation(userId, request.conversationId);
    } else {
      await store.createConversation({
        id: conversationId,
        userId,
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
    };
    const started = await store.startTurn(turn);
    if (!started.started) {
      throw new ServiceError('conflict', 'a turn is already running in this conversation', { activeTurnId: started.activeTurnId });
    }
    await this.startSandbox(turn);
    return (await store.getTurn(turn.id)) ?? turn;
  }

  /** Resolves with the turn once it is final (it always becomes final: see settleLost). */
  async waitForFinal(turnId: string): Promise<Turn> {
    const current = await this.requireTurn(turnId);
    if (isFinal(current.status)) return current;
    return new Promise<Turn>((resolve) => {
      const lateBy = Date.parse(current.deadlineAt) + DEADLINE_GRACE_MS - Date.now();
      const timer = setTimeout(() => void this.settleLost(turnId), Math.max(0, lateBy));
      const unsubscribe = this.events.onFinished(turnId, (turn) => {
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

  view(turn: Turn): TurnView {
    const end = turn.finishedAt ?? null;
    return {
      conversationId: turn.conversationId,
      turnId: turn.id,
      status: turn.status,
      text: turn.text,
      reason: turn.reason,
      usage: turn.usage,
      costUsd: turn.costUsd,
      durationMs: end === null ? null : Date.parse(end) - Date.parse(turn.createdAt),
      createdAt: turn.createdAt,
      finishedAt: end,
    };
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
      this.deps.log(`turn ${turn.id}: sandbox launch failed: ${(error as Error).message}`);
      await this.finish(turn.id, 'failed', { reason: `the sandbox could not be started: ${(error as Error).message}` });
      return;
    }
    this.sandboxes.set(turn.id, handle);
    await this.deps.store.updateTurn(turn.id, ['queued'], { status: 'starting' });
    void handle.ended.then((end) => {
      this.sandboxes.delete(turn.id);
      return this.settleAfterSandbox(turn.id, end);
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
        const how = end.signal !== null ? `was killed by ${end.signal}` : `exited with code ${end.exitCode}`;
        const reason = end.outOfMemory
          ? `the sandbox ran out of memory (limit ${limits.memoryMb} MiB) and ${how} without reporting a result`
          : `the sandbox ${how} without reporting a result`;
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
    this.events.finished(finished);
    return finished;
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
