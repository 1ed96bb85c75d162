import { setTimeout as sleep } from 'node:timers/promises';
import type { AgentSettings } from '../config.js';
import type { TurnView } from '../contract/api.js';
import { resultEvent, statusEvent } from '../contract/events.js';
import type { LimitName } from '../contract/limits.js';
import type { StateCommit } from '../domain/conversation.js';
import type { EventBudget } from '../domain/event-budget.js';
import type { Quota } from '../domain/quota.js';
import type { NewTurnEvent, ResultEvent } from '../domain/turn-event.js';
import { FINAL_STATUSES, isFinal, statesBefore, type FinalStatus } from '../domain/turn-state.js';
import { holdsSlot, type Turn, type TurnPatch } from '../domain/turn.js';
import { SandboxUnavailableError, type SandboxEnd, type SandboxHandle, type SandboxLauncher } from '../sandbox/launcher.js';
import type { ConversationStore } from '../store/conversation-store.js';
import { ServiceError } from './errors.js';
import type { TurnTokens } from './turn-token.js';
import type { WarmPool } from './warm-pool.js';
import { turnView } from './views.js';
import type { StateBlobs } from '../workspace/state-blobs.js';

export interface Limits {
  turnTimeoutSeconds: number;
  maxPromptBytes: number;
  maxStateBytes: number;
  memoryMb: number;
  events: EventBudget;
  /** The sandbox's disk (home and workspace): a restored state may expand to this much. */
  diskMb: number;
}

export interface LifecycleDeps {
  store: ConversationStore;
  /** Conversation states with their manifests. */
  states: StateBlobs;
  launcher: SandboxLauncher;
  tokens: TurnTokens;
  limits: Limits;
  quota: Quota;
  agent: AgentSettings;
  /** Sandboxes started ahead of their turns; none without it. */
  warm?: WarmPool;
  log: (message: string) => void;
}

/** The event a watcher sees when a turn moves to a working state. */
export const statusEvents = (turn: Turn): NewTurnEvent[] => [statusEvent(turn.status)];

/** How long after its deadline a turn with no word from its sandbox is settled anyway. */
const DEADLINE_GRACE_MS = 30_000;
/**
 * How long ending a turn waits for its stopped sandbox to be gone. A local sandbox is gone in
 * milliseconds; a Cloud Run execution once a poll sees it cancelled.
 */
const SANDBOX_GONE_WAIT_MS = 20_000;
/**
 * A sandbox cancelled by another instance is settled by that instance; this one settles it
 * only if that did not happen within this time.
 */
const CANCELLED_ELSEWHERE_GRACE_MS = 10_000;
/**
 * How long a turn may stay queued without a sandbox: runJob with its retries takes seconds. A
 * younger one may be being launched right now by another instance, and is left alone.
 */
const LAUNCH_WINDOW_MS = 2 * 60_000;
/** How often this instance asks the platform about one turn's sandbox when reconciling it. */
const PROBE_INTERVAL_MS = 10_000;
/** How often a request waiting on a turn reconciles it: the instance that follows it may have no CPU. */
const RECONCILE_WHILE_WAITING_MS = 15_000;
/**
 * How long after its sandbox ended a turn is left to the instance handling its result: that one
 * stops the sandbox, waits for it to be gone, then commits (runner-service, end()).
 */
const RESULT_IN_FLIGHT_GRACE_MS = 30_000;
/** Turns reconciled at once by a sweep: each may cost one call to the platform. */
const SWEEP_CONCURRENCY = 4;

/**
 * What happens to a turn between its admission and its final state, whoever asks: start its
 * sandbox, watch it, end the turn exactly once (result, crash, timeout, cancel), and tell
 * everyone waiting. The client's and the runner's services both stand on this.
 */
export class TurnLifecycle {
  private readonly sandboxes = new Map<string, SandboxHandle>();
  /** Background work under way (settling turns), which close() lets finish. */
  private readonly settling = new Set<Promise<void>>();
  /** Turns this instance is ending itself: their sandbox's end must not settle them again. */
  private readonly ending = new Set<string>();
  /** Aborts the waits of background work when the lifecycle closes. */
  private readonly closing = new AbortController();
  /** When this instance last asked the platform about a turn's sandbox, by turn. */
  private readonly probedAt = new Map<string, number>();
  private closed = false;

  constructor(readonly deps: LifecycleDeps) {}

  /** The token a turn's sandbox holds: bound to the turn, good until a little past its deadline. */
  tokenFor(turn: Pick<Turn, 'id' | 'conversationId' | 'userId' | 'deadlineAt'>): string {
    return this.deps.tokens.mint({
      turnId: turn.id,
      conversationId: turn.conversationId,
      userId: turn.userId,
      exp: Math.ceil((Date.parse(turn.deadlineAt) + DEADLINE_GRACE_MS) / 1000),
    });
  }

  /**
   * Gives the turn a sandbox: a warm one when one is ready (its runner then gets the turn and its
   * token from the claim route), else one launched now. Returns the turn as it then stands.
   */
  async startSandbox(turn: Turn): Promise<Turn> {
    const claimed = await this.deps.warm?.claim(turn.id, statusEvents);
    // A claim took a warm sandbox, or none was ready: either way the pool is short of one. A turn
    // that claimed one launched nothing: the start its admission counted pays for the refill.
    const refill = this.refillPool(claimed === undefined ? 0 : 1);
    try {
      if (claimed === undefined) return await this.launchFor(turn);
      if (claimed.handle !== undefined) this.follow(turn.id, claimed.handle);
      return claimed.turn;
    } finally {
      await refill;
    }
  }

  /** Launches a sandbox for the turn alone (no warm one was ready). */
  private async launchFor(turn: Turn): Promise<Turn> {
    const { launcher, limits, store } = this.deps;
    const token = this.tokenFor(turn);
    let handle: SandboxHandle;
    try {
      handle = await launcher.launch({ turnId: turn.id, token, timeoutSeconds: limits.turnTimeoutSeconds });
    } catch (error) {
      const message = (error as Error).message;
      this.deps.log(`turn ${turn.id}: sandbox launch failed: ${message}`);
      // What clients see names no host path: the details are in the service log.
      const unavailable = error instanceof SandboxUnavailableError;
      const reason = unavailable ? error.publicMessage : 'the sandbox could not be started (the service log has the details)';
      const failed = await this.finish(turn.id, 'failed', { reason });
      if (unavailable) throw new ServiceError('unavailable', reason, { ...turnView(failed), retryAfterSeconds: 10 });
      return failed;
    }
    const starting = await store.updateTurn(
      turn.id,
      statesBefore('starting'),
      { status: 'starting', sandboxRef: handle.ref },
      { events: statusEvents },
    );
    if (starting === undefined) {
      // Ended while its sandbox was starting (cancelled, its conversation deleted): nothing of
      // the sandbox may outlive the turn.
      await handle.cancel().catch((error: unknown) => this.deps.log(`turn ${turn.id}: stopping a sandbox started too late failed: ${String(error)}`));
      return this.requireTurn(turn.id);
    }
    this.follow(turn.id, handle);
    return starting;
  }

  /**
   * Tops the warm pool up in the cloud, where the new execution starts on other machines: the
   * request that started the turn waits for it (in parallel with its own launch), since an instance
   * may get no CPU once it has answered (cloud.google.com/run/docs/tips/general). Locally a sandbox
   * starting beside the turn takes CPU from it (bench: 1.11-1.20x a bare CLI run with the refill
   * at the claim, 1.06x with it after the turn), so after a claim the pool is filled as the turn
   * ends (finish); after a cold start at once, in the background.
   */
  private async refillPool(prepaid: number): Promise<void> {
    if (this.deps.launcher.sandboxesOutliveProcess) return this.deps.warm?.fill(prepaid);
    // A turn that found none ready runs beside the pool's sandboxes: past the running cap the
    // pool gives way now, not when some turn ends.
    if (prepaid === 0) void this.deps.warm?.fill();
  }

  /**
   * Resolves with the turn's final view once it is final, whichever instance finishes it (it
   * always ends: see settleLost). `current` is the turn as the caller last saw it. It waits for
   * the turn's result event rather than following the turn, which changes with every step.
   */
  async waitForFinal(current: Turn, hungUp?: AbortSignal): Promise<TurnView | undefined> {
    const turnId = current.id;
    if (isFinal(current.status)) return turnView(current);
    return new Promise<TurnView | undefined>((resolve) => {
      const lateBy = Date.parse(current.deadlineAt) + DEADLINE_GRACE_MS - Date.now();
      const timer = setTimeout(() => this.inBackground(`settling lost turn ${turnId}`, () => this.settleLost(turnId)), Math.max(0, lateBy));
      // While a request waits, this instance has CPU: the one following the sandbox may not.
      const stopReconciling = this.reconcileWhile(turnId);
      let stop: (() => void) | undefined;
      let done = false;
      const onResult = (result: ResultEvent) => {
        done = true;
        clearTimeout(timer);
        stopReconciling();
        stop?.();
        resolve(result.data);
      };
      stop = this.deps.store.watchResult(turnId, onResult);
      if (done) stop();
      // A waiter that has gone away holds nothing: not its listener, not its timers (its sandbox's
      // end still settles the turn).
      hungUp?.addEventListener('abort', () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        stopReconciling();
        stop?.();
        resolve(undefined);
      });
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
  stop(turn: Pick<Turn, 'id' | 'sandboxRef'>, status: FinalStatus, reason: string, stoppedBy: LimitName | null = null): Promise<Turn> {
    return this.end(turn, status, { reason, stoppedBy });
  }

  /**
   * Ends a turn whose sandbox may still run. Locally the sandbox is stopped and gone first, so
   * that nothing of it outlives the turn (a sandbox that posts its result early and carries on
   * would otherwise run on uncounted by the running limits); then the turn becomes final. In the
   * cloud the order is the other way round (see below), and the execution is cancelled at once.
   */
  async end(turn: Pick<Turn, 'id' | 'sandboxRef'>, status: FinalStatus, patch: TurnPatch, commit?: StateCommit): Promise<Turn> {
    this.ending.add(turn.id);
    try {
      if (this.deps.launcher.sandboxesOutliveProcess) {
        // In the cloud the request that ends a turn may be carried by its sandbox (the result, a
        // model call over budget): stopping the sandbox drops that request, and with it the
        // instance's CPU (request-based billing: cloud.google.com/run/docs/tips/general), so
        // the turn is made final first and its execution cancelled right after. Until the
        // execution is seen gone the final turn holds its running slot (holdsSandbox): here if
        // this request lives on, else when someone reconciles it.
        const holds = turn.sandboxRef !== null || this.sandboxes.has(turn.id);
        const finished = await this.finish(turn.id, status, holds ? { ...patch, holdsSandbox: true } : patch, commit);
        if ((await this.removeSandbox(turn)) && holds) return (await this.releaseSlot(turn.id)) ?? finished;
        return finished;
      }
      await this.removeSandbox(turn);
      return await this.finish(turn.id, status, patch, commit);
    } finally {
      this.ending.delete(turn.id);
    }
  }

  /**
   * Turns left unfinished when this process started. A local sandbox died with the process that
   * started it: those turns end now, with the reason. Sandboxes that outlive a process (Cloud Run
   * executions) are other instances' to follow: a new instance, one of many starting on demand,
   * touches none of them (reads and the sweeper settle the ones that are over).
   */
  async recoverUnfinished(): Promise<{ settled: number }> {
    if (this.deps.launcher.sandboxesOutliveProcess) return { settled: 0 };
    let settled = 0;
    for (const turn of await this.deps.store.listUnfinishedTurns()) {
      await this.finish(turn.id, 'failed', { reason: 'the service restarted while this turn was running; its sandbox was stopped' });
      settled += 1;
    }
    return { settled };
  }

  /**
   * Settles a turn that is over but not yet final: past its deadline, never launched, or whose
   * sandbox has ended (asked of the platform at most every few seconds per turn). Needs no work
   * after a response: whoever reads a turn (or the sweeper) calls this. Returns the turn as it
   * then stands.
   */
  async reconcile(turn: Turn): Promise<Turn> {
    if (this.ending.has(turn.id) || this.closed) return turn;
    if (isFinal(turn.status)) return turn.holdsSandbox ? this.releaseIfGone(turn) : turn;
    const now = Date.now();
    if (now > Date.parse(turn.deadlineAt) + DEADLINE_GRACE_MS) {
      await this.settleLost(turn.id);
      return this.requireTurn(turn.id);
    }
    if (turn.sandboxRef === null) {
      if (turn.status !== 'queued' || now - Date.parse(turn.createdAt) < LAUNCH_WINDOW_MS) return turn;
      return this.finish(turn.id, 'failed', { reason: 'the sandbox was never started: the instance starting it stopped' });
    }
    // Asked even when this instance follows the sandbox: its watch backs off to long intervals
    // and stands still whenever the instance has no request.
    const end = await this.probe(turn.id, turn.sandboxRef, turn.createdAt);
    // A cancelled sandbox is settled by whoever cancelled it, with their reason; the deadline
    // settles it should they not.
    if (end === undefined || end.kind === 'cancelled') return turn;
    if (now - (end.at ?? 0) < RESULT_IN_FLIGHT_GRACE_MS) return turn;
    await this.settleAfterSandbox(turn.id, end);
    return this.requireTurn(turn.id);
  }

  /**
   * Reconciles every turn that holds a running slot, everyone's (what Cloud Scheduler calls for)
   * or one user's: how many were checked, and how many let go of their slot (became final, or
   * their sandbox gone).
   */
  async sweep(userId?: string): Promise<{ checked: number; settled: number }> {
    const { store } = this.deps;
    const holding = [...(await store.listUnfinishedTurns(userId)), ...(await store.listTurnsHoldingSandboxes(userId))];
    let settled = 0;
    const queue = [...holding];
    const worker = async () => {
      for (let turn = queue.shift(); turn !== undefined; turn = queue.shift()) {
        try {
          if (!holdsSlot(await this.reconcile(turn))) settled += 1;
        } catch (error) {
          this.deps.log(`sweep: reconciling turn ${turn.id} failed: ${(error as Error).message}`);
        }
      }
    };
    await Promise.all(Array.from({ length: SWEEP_CONCURRENCY }, worker));
    return { checked: holding.length, settled };
  }

  /** A final turn still holding its slot lets go of it once its sandbox is seen ended. */
  private async releaseIfGone(turn: Turn): Promise<Turn> {
    if (turn.sandboxRef === null) return (await this.releaseSlot(turn.id)) ?? turn;
    if ((await this.probe(turn.id, turn.sandboxRef, turn.createdAt)) === undefined) return turn;
    return (await this.releaseSlot(turn.id)) ?? turn;
  }

  /**
   * How the turn's sandbox ended, as its platform says: asked at most every PROBE_INTERVAL_MS
   * per turn on this instance (undefined when not asked now, or while it runs).
   */
  private async probe(turnId: string, sandboxRef: string, createdAt: string): Promise<SandboxEnd | undefined> {
    const now = Date.now();
    if (now - (this.probedAt.get(turnId) ?? 0) < PROBE_INTERVAL_MS) return undefined;
    this.probedAt.set(turnId, now);
    if (this.probedAt.size >= 10_000) {
      for (const [id, at] of this.probedAt) if (now - at >= PROBE_INTERVAL_MS) this.probedAt.delete(id);
    }
    return this.deps.launcher.status(sandboxRef, Date.parse(createdAt));
  }

  /** Reconciles the turn every little while until the returned function is called. */
  reconcileWhile(turnId: string): () => void {
    const timer = setInterval(() => {
      this.inBackground(`reconciling turn ${turnId}`, async () => {
        const turn = await this.deps.store.getTurn(turnId);
        if (turn !== undefined) await this.reconcile(turn);
      });
    }, RECONCILE_WHILE_WAITING_MS);
    timer.unref();
    return () => clearInterval(timer);
  }

  /** The one way a turn becomes final: compare-and-set, then tell the watchers. Idempotent. */
  async finish(turnId: string, status: FinalStatus, patch: TurnPatch, commit?: StateCommit): Promise<Turn> {
    const { store, states } = this.deps;
    const finished = await store.updateTurn(
      turnId,
      statesBefore(status),
      { ...patch, status, finishedAt: new Date().toISOString() },
      { ...(commit ? { commit } : {}), events: (turn) => [resultEvent(turnView(turn))] },
    );
    if (finished === undefined) return this.requireTurn(turnId);
    if (finished.status !== 'succeeded' && finished.uploadedStateKey !== null) await states.delete(finished.uploadedStateKey);
    // Locally the pool is topped up as a turn ends (see refillPool), which also frees a running
    // slot the pool may have given way to. In the background; in the cloud the next claim or sweep sees to it.
    if (!this.deps.launcher.sandboxesOutliveProcess) void this.deps.warm?.fill();
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
    this.closing.abort();
    await this.deps.warm?.close();
    await this.deps.launcher.close();
    // Sandboxes stopped by the launcher report their end on the next turns of the event loop.
    await new Promise((resolve) => setImmediate(resolve));
    await Promise.allSettled([...this.settling]);
  }

  /** Stops the turn's sandbox, wherever it runs, and waits (bounded) until it is gone. */
  private async removeSandbox(turn: Pick<Turn, 'id' | 'sandboxRef'>): Promise<boolean> {
    const sandbox = this.sandboxes.get(turn.id) ?? this.reattach(turn);
    if (sandbox === undefined) return true;
    try {
      await sandbox.cancel();
    } catch (error) {
      // An execution that already ended refuses a cancel; its end is what we wait for.
      this.deps.log(`turn ${turn.id}: stopping the sandbox failed: ${(error as Error).message}`);
    }
    // Closing, a sandbox that outlives this process is no longer ours to wait for (its end never comes).
    const gone = await Promise.race([
      sandbox.ended.then(() => true),
      sleep(SANDBOX_GONE_WAIT_MS, false, { ref: false, signal: this.closing.signal }).catch(() => false),
    ]);
    if (!gone) this.deps.log(`turn ${turn.id}: the sandbox was not seen gone within ${SANDBOX_GONE_WAIT_MS} ms of its stop`);
    return gone;
  }

  /** A final turn's sandbox is gone: the turn frees the running slot it held. */
  private releaseSlot(turnId: string): Promise<Turn | undefined> {
    return this.deps.store.updateTurn(turnId, FINAL_STATUSES, { holdsSandbox: false });
  }

  private reattach(turn: Pick<Turn, 'sandboxRef'>): SandboxHandle | undefined {
    return turn.sandboxRef === null ? undefined : this.deps.launcher.reattach(turn.sandboxRef);
  }

  private follow(turnId: string, handle: SandboxHandle): void {
    this.sandboxes.set(turnId, handle);
    void handle.ended.then((end) => {
      this.sandboxes.delete(turnId);
      if (this.ending.has(turnId)) return;
      this.inBackground(`settling turn ${turnId}`, async () => {
        if (end.kind === 'cancelled') await sleep(CANCELLED_ELSEWHERE_GRACE_MS, undefined, { signal: this.closing.signal });
        await this.settleAfterSandbox(turnId, end);
      });
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
    await this.end(await this.requireTurn(turnId), 'failed', { reason: 'no result from the sandbox by the turn deadline' });
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
        // Closing: what was left unsettled the next start settles.
        if (this.closing.signal.aborted) return;
        this.deps.log(`${what} failed: ${(error as Error).stack ?? String(error)}`);
      })
      .finally(() => this.settling.delete(running));
    this.settling.add(running);
  }
}
