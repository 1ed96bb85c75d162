import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { StoredBlob } from '../blobs/blob-store.js';
import type { AgentOptions } from '../contract/api.js';
import { agentStepEvent, type EgressData } from '../contract/events.js';
import { MAX_RESULT_TEXT_CHARS, type AgentEvent, type RunnerResult, type RunnerTurn, type WarmClaimAnswer } from '../contract/runner.js';
import type { Usage } from '../contract/turn.js';
import type { EgressAdmission, EgressCaps } from '../domain/egress-budget.js';
import { budgetHit } from '../domain/quota.js';
import { isFinal, statesBefore, stayingIn } from '../domain/turn-state.js';
import type { Turn } from '../domain/turn.js';
import { EgressRecords } from './egress-records.js';
import { ServiceError } from './errors.js';
import { storeState } from './stored-state.js';
import { statusEvents, type TurnLifecycle } from './turn-lifecycle.js';
import type { TurnClaims } from './turn-token.js';
import { headOf } from '../contract/runner-limits.js';

/** An answer as stored: at most MAX_RESULT_TEXT_CHARS, saying so when it was cut. */
function keptText(text: string): string {
  if (text.length <= MAX_RESULT_TEXT_CHARS) return text;
  return `${headOf(text, MAX_RESULT_TEXT_CHARS)}\n\n[clauderun: the answer was ${text.length} characters; only the first ${MAX_RESULT_TEXT_CHARS} are kept]`;
}

/**
 * What identifies a runner's result: its validated fields, in the schema's order. The runner
 * posts the same result again when it cannot know whether the first post arrived.
 */
function digestOf(result: RunnerResult): string {
  return createHash('sha256').update(JSON.stringify(result)).digest('base64url');
}

/**
 * A turn that is final, as the answer to a result: the turn itself when that result is what ended
 * it (a replay), a conflict otherwise (another result, or the turn ended without it).
 */
function asEndedBy(turn: Turn, digest: string): Turn {
  if (turn.resultDigest === digest) return turn;
  throw new ServiceError('conflict', `the turn is already ${turn.status}; this result was not taken`, { status: turn.status });
}

/** The token's turn, unless it is gone or final: then its token is void. */
function unfinished(turn: Turn | undefined): Turn {
  if (turn === undefined) throw new ServiceError('unauthenticated', 'invalid or expired turn token');
  if (isFinal(turn.status)) throw new ServiceError('unauthenticated', `the turn is already ${turn.status}`);
  return turn;
}

/**
 * What a sandbox may ask, holding only its turn token: its turn, its conversation's state, a
 * place for the new state, progress and the result. Every call checks the token first.
 */
export class RunnerService {
  private readonly egressRecords: EgressRecords;

  constructor(private readonly lifecycle: TurnLifecycle) {
    // Egress events are held to the turn's connection cap (each counted connection is one; a
    // refusal past the caps is recorded once), not to the budget of its progress events: tool
    // steps filling that must not hide where the sandbox connected.
    this.egressRecords = new EgressRecords(lifecycle.deps.store);
  }

  private get deps() {
    return this.lifecycle.deps;
  }

  /**
   * Checks a turn token's signature and expiry and that it is bound to `turnId`. Alone, this is
   * enough only where the store operation that follows refuses a final turn itself: the token
   * is void once its turn is final.
   */
  verifyToken(token: string | undefined, turnId?: string): TurnClaims {
    const claims = token === undefined ? undefined : this.deps.tokens.verify(token);
    if (claims === undefined || (turnId !== undefined && claims.turnId !== turnId)) {
      throw new ServiceError('unauthenticated', 'invalid or expired turn token');
    }
    return claims;
  }

  /** Checks a turn token as verifyToken does, and reads its turn: it must exist and not be final. */
  async authenticateRunner(token: string | undefined, turnId?: string): Promise<Turn> {
    const claims = this.verifyToken(token, turnId);
    return unfinished(await this.deps.store.getTurn(claims.turnId));
  }

  async beginRun(claims: Pick<TurnClaims, 'turnId'>): Promise<RunnerTurn> {
    return this.runnerTurn(await this.startRunning(claims.turnId));
  }

  /** The turn, moved to `running` unless it is there already; refused once it is final. */
  private async startRunning(turnId: string): Promise<Turn> {
    const turn =
      (await this.deps.store.updateTurn(
        turnId,
        statesBefore('running'),
        { status: 'running', startedAt: new Date().toISOString() },
        { events: statusEvents },
      )) ?? unfinished(await this.deps.store.getTurn(turnId));
    if (turn.status !== 'running') throw new ServiceError('conflict', `the turn is ${turn.status}`);
    return turn;
  }

  /**
   * A warm sandbox asks for its turn with its pool token (a long poll): once a turn claimed it,
   * the turn begins to run and its token is minted for it, here and nowhere before. Asked again,
   * the same sandbox gets the same turn while it runs; nothing else is ever given for that token.
   */
  async claimTurn(poolToken: string | undefined, sandboxId: string, hungUp: AbortSignal): Promise<WarmClaimAnswer> {
    const warm = this.deps.warm;
    if (poolToken === undefined || warm?.holderOf(poolToken) !== sandboxId)
      throw new ServiceError('unauthenticated', 'invalid or expired pool token');
    const answer = await warm.awaitClaim(sandboxId, hungUp);
    if (typeof answer === 'string') return { claim: answer };
    let turn: Turn;
    try {
      turn = await this.startRunning(answer.turnId);
    } catch (error) {
      // Gone or ended meanwhile (cancelled, say): this sandbox gets no turn.
      if (error instanceof ServiceError && (error.code === 'unauthenticated' || error.code === 'conflict')) return { claim: 'gone' };
      throw error;
    }
    return { claim: 'turn', turnToken: this.lifecycle.tokenFor(turn), turn: await this.runnerTurn(turn) };
  }

  private async runnerTurn(turn: Turn): Promise<RunnerTurn> {
    const conversation = await this.deps.store.getConversation(turn.conversationId);
    return {
      turnId: turn.id,
      conversationId: turn.conversationId,
      prompt: turn.prompt,
      sessionId: conversation?.sessionId ?? null,
      hasState: conversation?.stateKey != null,
      model: turn.options.model ?? this.deps.agent.model,
      smallFastModel: this.deps.agent.smallFastModel,
      maxOutputTokens: this.deps.agent.maxOutputTokens,
      maxStateBytes: this.deps.limits.maxStateBytes,
      maxRestoreBytes: this.deps.limits.diskMb * 1024 * 1024,
      experimentalBetas: this.deps.agent.experimentalBetas,
      textDeltaEveryMs: this.deps.agent.textDeltaEveryMs,
      options: withoutModel(turn.options),
    };
  }

  async openState(turn: Turn): Promise<StoredBlob | undefined> {
    const conversation = await this.deps.store.getConversation(turn.conversationId);
    return conversation?.stateKey ? this.deps.states.open(conversation.stateKey) : undefined;
  }

  /**
   * Stores the state the runner uploads, with its manifest; it becomes the conversation's only
   * when the turn succeeds. One the API cannot read within the sandbox's limits is not stored.
   */
  async saveState(claims: Pick<TurnClaims, 'turnId' | 'conversationId'>, body: Readable): Promise<void> {
    const key = `conversations/${claims.conversationId}/state-${claims.turnId}.tar.gz`;
    await storeState(this.deps.states, key, body);
    const updated = await this.deps.store.updateTurn(claims.turnId, stayingIn('running'), { uploadedStateKey: key });
    if (updated === undefined) {
      // A late copy of an upload (a retry whose first try the API had taken after all) finds the
      // turn ended: if it succeeded, this key is the conversation's state now, and is kept.
      const committed = (await this.deps.store.getConversation(claims.conversationId))?.stateKey;
      if (committed !== key) await this.deps.states.delete(key);
      throw new ServiceError('unauthenticated', 'the turn is no longer running');
    }
  }

  /**
   * Ends the turn with the runner's result, once: the same result posted again (its first answer
   * was lost on the way) gets the turn as it ended; any other result once the turn is final is
   * refused and changes nothing.
   */
  async finishFromRunner(claims: TurnClaims, reported: RunnerResult): Promise<Turn> {
    const digest = digestOf(reported);
    const turn = await this.deps.store.getTurn(claims.turnId);
    if (turn === undefined) throw new ServiceError('unauthenticated', 'invalid or expired turn token');
    if (isFinal(turn.status)) return asEndedBy(turn, digest);
    // Two posts of one result may both get here: the turn becomes final once (compare-and-set),
    // with this digest, and both are answered with it.
    return asEndedBy(await this.endWithResult(turn, reported, digest), digest);
  }

  private async endWithResult(turn: Turn, reported: RunnerResult, digest: string): Promise<Turn> {
    const result = reported.text === undefined ? reported : { ...reported, text: keptText(reported.text) };
    // A result is the runner's last word: its sandbox is stopped as the turn ends (lifecycle.end),
    // and nothing of it may outlive its turn.
    if (result.outcome === 'failed') {
      return this.lifecycle.end(turn, 'failed', { reason: result.reason, text: result.text ?? null, resultDigest: digest });
    }
    if (result.stateSaved && turn.uploadedStateKey === null) {
      return this.lifecycle.end(turn, 'failed', { reason: 'the runner reported a saved state that never arrived', resultDigest: digest });
    }
    // One turn runs at a time in a conversation, so its state cannot change under us here.
    const previous = (await this.deps.store.getConversation(turn.conversationId))?.stateKey ?? null;
    const saved = turn.uploadedStateKey;
    const reason = result.stopReason === 'max_turns' ? maxTurnsReason(turn.options.maxTurns) : null;
    const finished = await this.lifecycle.end(
      turn,
      'succeeded',
      { text: result.text, reason, resultDigest: digest },
      saved === null ? undefined : { sessionId: result.sessionId, stateKey: saved },
    );
    if (finished.status === 'succeeded' && saved !== null && previous !== null && previous !== saved) {
      await this.deps.states.delete(previous);
    }
    return finished;
  }

  /** The agent's progress, as the runner reports it, within the turn's budget; refused once the turn is final. */
  async recordAgentEvents(claims: TurnClaims, events: AgentEvent[]): Promise<void> {
    const appended = await this.deps.store.appendEvents(claims.turnId, events.map(agentStepEvent), this.deps.limits.events);
    if (appended === undefined) throw new ServiceError('unauthenticated', 'the turn is no longer running');
  }

  /** Counts a connection the sandbox opens out against its turn's and its user's caps; undefined once the turn is over. */
  openEgress(turn: Pick<Turn, 'id' | 'userId'>, caps: EgressCaps): Promise<EgressAdmission | undefined> {
    return this.deps.store.openEgress(turn, caps, new Date());
  }

  /**
   * A connection out is over: its event goes on the turn within the turn's budget (not once the
   * turn is final: a tunnel may outlive its turn by a moment), its bytes on the turn and the user's day.
   */
  recordEgress(turn: Pick<Turn, 'id' | 'userId'>, attempt: EgressData): Promise<void> {
    return this.egressRecords.record(turn, attempt);
  }

  /**
   * Adds what the model proxy metered to the turn and to its user's day. A call that takes the
   * user over a daily budget stops the turn there: no later call of it reaches the model, and
   * new turns are refused until the day is over.
   */
  async recordUsage(turn: Turn, usage: Usage, costUsd: number): Promise<void> {
    const ledger = await this.deps.store.addUsage(turn, usage, costUsd);
    const overBudget = budgetHit(ledger, this.deps.quota, new Date());
    if (overBudget !== undefined) await this.lifecycle.stop(turn, 'failed', `stopped: ${overBudget.message}`, overBudget.limit);
  }
}

const withoutModel = ({ model: _model, ...rest }: AgentOptions): Omit<AgentOptions, 'model'> => rest;

/** Why a turn that succeeded stopped before the agent was done. */
function maxTurnsReason(maxTurns: number | undefined): string {
  const limit = maxTurns === undefined ? 'its limit of turns' : `its limit of ${maxTurns} turns`;
  return `max_turns: the agent stopped at ${limit} (options.maxTurns) before it was done; its work is saved, and the next prompt continues it`;
}
