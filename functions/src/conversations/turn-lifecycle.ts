import type { BlobStore } from '../blobs/blob-store.js';
import { isFinal, type TurnStatus } from '../contract/turn.js';
import { SandboxUnavailableError, type SandboxEnd, type SandboxHandle, type SandboxLauncher } from '../sandbox/launcher.js';
import { TurnView } from '../contract/api.js';
import type { ConversationStore, NewTurnEvent, StateCommit, Turn, TurnEvent, TurnPatch } from '../store/conversation-store.js';
import { ServiceError } from './errors.js';
import type { LimitName, Quota } from './quota.js';
import { statesBefore } from './turn-state.js';
import type { TurnTokens } from './turn-token.js';
import { turnView } from './views.js';

export interface Limits {
  turnTimeoutSeconds: number;
  maxPromptBytes: number;
  maxStateBytes: number;
  memoryMb: number;
  /** The sandbox's disk (home and workspace): a restored state may expand to this much. */
  diskMb: number;
}

export interface LifecycleDeps {
  store: ConversationStore;
  blobs: BlobStore;
  launcher: SandboxLauncher;
  tokens: TurnTokens;
  limits: Limits;
  quota: Quota;
  agentModel: string | undefined;
  log: (message: string) => void;
}

/** The event a watcher sees when a turn moves to a working state. */
export const statusEvent = (turn: Turn): NewTurnEvent[] => [{ type: 'status', data: { status: turn.status } }];

/** How long after its deadline a turn with no word from its sandbox is settled anyway. */
const DEADLINE_GRACE_MS = 30_000;
const UNFINISHED: readonly TurnStatus[] = ['queued', 'starting', 'running'];

/**
 * What happens to a turn between its admission and its final state, whoever asks: start its
 * sandbox, watch it, end the turn exactly once (result, crash, timeout, cancel), and tell
 * everyone waiting. The client's and the runner's services both stand on this.
 */
export class TurnLifecycle {
  private readonly sandboxes = new Map<string, SandboxHandle>();
  /** Background work under way (settling turns), which close() lets finish. */
  private readonly settling = new Set<Promise<void>>();
  private closed = false;

  constructor(readonly deps: LifecycleDeps) {}

  /** Launches the turn's sandbox; returns the turn as it then stands. */
  async startSandbox(turn: Turn): Promise<Turn> {
    const { launcher, limits, store, tokens } = this.deps;
    const token = tokens.mint({
      turnId: turn.id,
      conversationId: turn.conversationId,
      userId: turn.userId,
      exp: Math.ceil((Date.parse(turn.deadlineAt) + DEADLINE_GRACE_MS) / 1000),
    });
    let handle: SandboxHandle;
    try {
      handle = await launcher.launch({ turnId: turn.id, token, timeoutSeconds: limits.turnTimeoutSeconds });
    } catch (error) {
      const message = (error as Error).message;
      this.deps.log(`turn ${turn.id}: sandbox launch failed: ${message}`);
      const failed = await this.finish(turn.id, 'failed', { reason: `the sandbox could not be started: ${message}` });
      if (error instanceof SandboxUnavailableError) {
        throw new ServiceError('unavailable', `no sandbox is available right now: ${message}`, { ...turnView(failed), retryAfterSeconds: 10 });
      }
      return failed;
    }
    const starting = await store.updateTurn(turn.id, ['queued'], { status: 'starting', sandboxRef: handle.ref }, { events: statusEvent });
    this.follow(turn.id, handle);
    return starting ?? this.requireTurn(turn.id);
  }

  /**
   * Resolves with the turn's final view once it is final, whichever instance finishes it (it
   * always ends: see settleLost). `current` is the turn as the caller last saw it. It waits for
   * the turn's result event rather than following the turn, which changes with every step.
   */
  async waitForFinal(current: Turn): Promise<TurnView> {
    const turnId = current.id;
    if (isFinal(current.status)) return turnView(current);
    return new Promise<TurnView>((resolve) => {
      const lateBy = Date.parse(current.deadlineAt) + DEADLINE_GRACE_MS - Date.now();
      const timer = setTimeout(() => this.inBackground(`settling lost turn ${turnId}`, () => this.settleLost(turnId)), Math.max(0, lateBy));
      let stop: (() => void) | undefined;
      let done = false;
      const onResult = (result: TurnEvent) => {
        done = true;
        clearTimeout(timer);
        stop?.();
        resolve(TurnView.parse(result.data));
      };
      stop = this.deps.store.watchResult(turnId, onResult);
      if (done) stop();
    });
  }

  /** Stops a turn's sandbox and ends the turn `cancelled`; the conversation keeps its previous state. */
  cancel(turn: Turn): Promise<Turn> {
    return this.stop(turn, 'cancelled', 'the turn was cancelled');
  }

  /**
   * Stops a turn's sandbox, wherever it runs, and ends the turn with the status and reason given
   * (and the limit that stopped it, if one did); the conversation keeps its previous state.
   */
  async stop(turn: Pick<Turn, 'id' | 'sandboxRef'>, status: TurnStatus, reason: string, stoppedBy: LimitName | null = null): Promise<Turn> {
    const sandbox = this.sandboxes.get(turn.id) ?? this.reattach(turn);
    // Once the stop is asked for, the turn is over: ending it now voids the token, so nothing the
    // sandbox still says in its last moments can count.
    await sandbox?.cancel();
    return this.finish(turn.id, status, { reason, stoppedBy });
  }

  /**
   * Turns left unfinished when this process started: those whose sandbox still runs elsewhere (a
   * Cloud Run execution) are followed again; the rest can never report and end now, with the reason.
   */
  async recoverUnfinished(): Promise<{ followed: number; settled: number }> {
    let followed = 0;
    let settled = 0;
    for (const turn of await this.deps.store.listUnfinishedTurns()) {
      const handle = this.reattach(turn);
      if (handle !== undefined) {
        this.follow(turn.id, handle);
        followed += 1;
      } else {
        await this.finish(turn.id, 'failed', { reason: 'the service restarted while this turn was running; its sandbox was stopped' });
        settled += 1;
      }
    }
    return { followed, settled };
  }

  /** The one way a turn becomes final: compare-and-set, then tell the watchers. Idempotent. */
  async finish(turnId: string, status: TurnStatus, patch: TurnPatch, commit?: StateCommit): Promise<Turn> {
    const { store, blobs } = this.deps;
    const from = statesBefore(status).filter((s) => UNFINISHED.includes(s));
    const finished = await store.updateTurn(
      turnId,
      from,
      { ...patch, status, finishedAt: new Date().toISOString() },
      { ...(commit ? { commit } : {}), events: (turn) => [{ type: 'result', data: turnView(turn) }] },
    );
    if (finished === undefined) return this.requireTurn(turnId);
    if (finished.status !== 'succeeded' && finished.uploadedStateKey !== null) await blobs.delete(finished.uploadedStateKey);
    return finished;
  }

  async requireTurn(turnId: string): Promise<Turn> {
    const turn = await this.deps.store.getTurn(turnId);
    if (turn === undefined) throw new ServiceError('not_found', `turn ${turnId} not found`);
    return turn;
  }

  /**
   * Stops watching sandboxes, then lets the turns already being settled finish writing, so that
   * the store is not closed under them. What is left unsettled the next start settles.
   */
  async close(): Promise<void> {
    this.closed = true;
    await this.deps.launcher.close();
    // Sandboxes stopped by the launcher report their end on the next turns of the event loop.
    await new Promise((resolve) => setImmediate(resolve));
    await Promise.allSettled([...this.settling]);
  }

  private reattach(turn: Pick<Turn, 'sandboxRef'>): SandboxHandle | undefined {
    return turn.sandboxRef === null ? undefined : this.deps.launcher.reattach(turn.sandboxRef);
  }

  private follow(turnId: string, handle: SandboxHandle): void {
    this.sandboxes.set(turnId, handle);
    void handle.ended.then((end) => {
      this.sandboxes.delete(turnId);
      this.inBackground(`settling turn ${turnId}`, () => this.settleAfterSandbox(turnId, end));
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

  /**
   * Work no request waits for: a failure is logged, never left to crash the process. None starts
   * once the lifecycle is closed; close() waits for what runs.
   */
  private inBackground(what: string, work: () => Promise<void>): void {
    if (this.closed) return;
    const running = work()
      .catch((error: unknown) => {
        // A conversation deleted while its sandbox wound down has nothing left to settle.
        if (error instanceof ServiceError && error.code === 'not_found') return;
        this.deps.log(`${what} failed: ${(error as Error).stack ?? String(error)}`);
      })
      .finally(() => this.settling.delete(running));
    this.settling.add(running);
  }
}
