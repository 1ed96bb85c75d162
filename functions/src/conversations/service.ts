import { randomUUID } from 'node:crypto';
import type { CreateConversationRequest, PostConversationRequest, TurnView, UsageView } from '../contract/api.js';
import { TurnEventType } from '../contract/event-types.js';
import { titleOf, UNTITLED, type Conversation, type ListCursor } from '../domain/conversation.js';
import { nextUtcDay } from '../domain/quota.js';
import type { TurnEvent } from '../domain/turn-event.js';
import { isFinal } from '../domain/turn-state.js';
import { newTurn, type Turn } from '../domain/turn.js';
import type { StartTurnResult } from '../store/conversation-store.js';
import { checkOptions, turnOptions } from './agent-options.js';
import { refusal, ServiceError } from './errors.js';
import { ownConversation } from './owned.js';
import type { TurnLifecycle } from './turn-lifecycle.js';

/** What clients ask of conversations: admit prompts, read, watch, cancel, delete. Knows nothing of HTTP. */
export class ConversationService {
  constructor(private readonly lifecycle: TurnLifecycle) {}

  private get deps() {
    return this.lifecycle.deps;
  }

  /** A conversation of the user's with no turn yet. */
  async createConversation(userId: string, request: CreateConversationRequest): Promise<Conversation> {
    const now = new Date().toISOString();
    const conversation: Conversation = {
      id: randomUUID(),
      userId,
      title: titleOf(request.title ?? '') || UNTITLED,
      createdAt: now,
      updatedAt: now,
      sessionId: null,
      stateKey: null,
      options: checkOptions(request.options ?? {}, this.deps.agent),
    };
    const created = await this.deps.store.createConversation(conversation, this.deps.quota);
    if (!created.created) throw refusal(created.limitHit);
    return conversation;
  }

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
    const existing = request.conversationId === undefined ? undefined : await this.ownConversation(userId, request.conversationId);
    // A new conversation keeps the options it starts with; a turn of one that exists overrides its options for itself.
    const options = checkOptions(turnOptions(existing?.options ?? {}, request.options), this.deps.agent);
    // A conversation created empty and untitled is named by its first prompt, as a new one is.
    const title =
      existing?.title === UNTITLED && (await store.listTurns(existing.id)).length === 0 ? titleOf(request.message) || UNTITLED : undefined;
    const newConversation: Conversation | undefined =
      request.conversationId !== undefined
        ? undefined
        : {
            id: conversationId,
            userId,
            title: titleOf(request.message),
            createdAt: now.toISOString(),
            updatedAt: now.toISOString(),
            sessionId: null,
            stateKey: null,
            options,
          };
    const turn = newTurn({
      id: randomUUID(),
      conversationId,
      userId,
      prompt: request.message,
      options,
      createdAt: now.toISOString(),
      deadlineAt: new Date(now.getTime() + limits.turnTimeoutSeconds * 1000).toISOString(),
      idempotencyKey: idempotencyKey ?? null,
    });
    // A new conversation is created with its first turn, or not at all.
    const start = () =>
      store.startTurn(turn, { quota: this.deps.quota, ...(newConversation ? { newConversation } : {}), ...(title === undefined ? {} : { title }) });
    let started = await start();
    // What holds the slot may be a turn that is over but not yet settled (its sandbox died while
    // no instance had CPU to notice): settle those, and judge the start again.
    if (!started.started && !('existingTurnId' in started) && (await this.settleOverTurns(userId, started)) > 0) started = await start();
    if (!started.started) {
      if ('existingTurnId' in started) return this.lifecycle.requireTurn(started.existingTurnId);
      if ('limitHit' in started) throw refusal(started.limitHit);
      throw new ServiceError('conflict', 'a turn is already running in this conversation', { activeTurnId: started.activeTurnId });
    }
    return this.lifecycle.startSandbox(turn);
  }

  async listConversations(userId: string, limit: number, cursor?: string): Promise<{ conversations: Conversation[]; nextCursor: string | null }> {
    const conversations = await this.deps.store.listConversations(userId, limit, cursor === undefined ? undefined : decodeCursor(cursor));
    const last = conversations.at(-1);
    const nextCursor = conversations.length === limit && last !== undefined ? encodeCursor({ updatedAt: last.updatedAt, id: last.id }) : null;
    return { conversations, nextCursor };
  }

  async getConversation(userId: string, conversationId: string): Promise<{ conversation: Conversation; turns: Turn[] }> {
    const conversation = await this.ownConversation(userId, conversationId);
    const turns = await this.deps.store.listTurns(conversationId);
    return { conversation, turns: await Promise.all(turns.map((turn) => this.lifecycle.reconcile(turn))) };
  }

  /** Deletes a conversation with its state; a running turn is cancelled first. */
  async deleteConversation(userId: string, conversationId: string): Promise<void> {
    const { turns } = await this.getConversation(userId, conversationId);
    for (const turn of turns.filter((t) => !isFinal(t.status))) await this.lifecycle.cancel(turn);
    const keys = await this.deps.store.deleteConversation(conversationId);
    for (const key of keys) await this.deps.states.delete(key);
  }

  async getTurn(userId: string, conversationId: string, turnId: string): Promise<Turn> {
    await this.ownConversation(userId, conversationId);
    const turn = await this.deps.store.getTurn(turnId);
    if (turn === undefined || turn.conversationId !== conversationId) throw new ServiceError('not_found', `turn ${turnId} not found`);
    return this.lifecycle.reconcile(turn);
  }

  /** Stops a running turn's sandbox; the turn ends `cancelled` and the conversation keeps its previous state. */
  async cancel(userId: string, conversationId: string, turnId: string): Promise<Turn> {
    const turn = await this.getTurn(userId, conversationId, turnId);
    if (isFinal(turn.status)) throw new ServiceError('conflict', `the turn is already ${turn.status}`, { status: turn.status });
    return this.lifecycle.cancel(turn);
  }

  /**
   * The turn's events after `afterSeq`, then new ones as they are appended, on this instance or
   * another. `resultAlreadySeen` means the client resumed after the final result: nothing more comes.
   */
  async watchEvents(
    userId: string,
    conversationId: string,
    turnId: string,
    afterSeq: number,
    send: (event: TurnEvent) => void,
  ): Promise<{ stop: () => void; resultAlreadySeen: boolean }> {
    await this.getTurn(userId, conversationId, turnId);
    const lastSeen = afterSeq > 0 ? (await this.deps.store.listEvents(turnId, afterSeq - 1))[0] : undefined;
    if (lastSeen?.seq === afterSeq && lastSeen.type === TurnEventType.result) return { stop: () => {}, resultAlreadySeen: true };
    const stopWatching = this.deps.store.watchEvents(turnId, afterSeq, send);
    // While the stream is open this instance has CPU; the one following the sandbox may not.
    const stopReconciling = this.lifecycle.reconcileWhile(turnId);
    return {
      stop: () => {
        stopReconciling();
        stopWatching();
      },
      resultAlreadySeen: false,
    };
  }

  /** What the user has spent today and has running, with the limits that apply to them. */
  async usage(userId: string): Promise<UsageView> {
    await this.settleOverTurns(userId);
    const now = new Date();
    const { ledger, runningTurns } = await this.deps.store.getUsage(userId, now);
    const { quota } = this.deps;
    return {
      day: ledger.day,
      turns: ledger.turns,
      tokens: ledger.tokens,
      costUsd: ledger.costUsd,
      egressBytes: ledger.egressBytes,
      runningTurns,
      limits: {
        runningTurns: quota.runningTurnsPerUser,
        turnsPerMinute: quota.turnsPerMinute,
        dailyTokens: quota.dailyTokens,
        dailyCostUsd: quota.dailyCostUsd,
        dailyEgressBytes: quota.dailyEgressBytes,
      },
      resetsAt: nextUtcDay(ledger.day).toISOString(),
    };
  }

  /** The turn's final view once it is final; undefined if `hungUp` fires first (the client left). */
  waitForFinal(turn: Turn, hungUp?: AbortSignal): Promise<TurnView | undefined> {
    return this.lifecycle.waitForFinal(turn, hungUp);
  }

  /**
   * Reconciles the turns that count against a start (the user's own; everyone's when the
   * service-wide cap refused it): how many of them let go of their slot.
   */
  private async settleOverTurns(userId: string, refusal?: StartTurnResult): Promise<number> {
    const everyone = refusal !== undefined && 'limitHit' in refusal && refusal.limitHit.limit === 'running_sandboxes';
    if (refusal !== undefined && 'limitHit' in refusal && !everyone && refusal.limitHit.limit !== 'running_turns') return 0;
    return (await this.lifecycle.sweep(everyone ? undefined : userId)).settled;
  }

  private ownConversation(userId: string, conversationId: string): Promise<Conversation> {
    return ownConversation(this.deps.store, userId, conversationId);
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
