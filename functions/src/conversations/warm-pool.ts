import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NewTurnEvent } from '../domain/turn-event.js';
import { isFinal } from '../domain/turn-state.js';
import type { Turn } from '../domain/turn.js';
import { idle, WARM_READY_WINDOW_MS, type WarmSandbox } from '../domain/warm-sandbox.js';
import type { SandboxHandle, SandboxLauncher, WarmSandboxHandle } from '../sandbox/launcher.js';
import type { ConversationStore } from '../store/conversation-store.js';
import type { PoolTokens } from './turn-token.js';

export interface WarmPoolDeps {
  store: ConversationStore;
  launcher: SandboxLauncher;
  tokens: PoolTokens;
  /** How many warm sandboxes to keep idle, and how long each waits for a turn. */
  settings: { size: number; idleSeconds: number };
  turnTimeoutSeconds: number;
  /** Sandboxes running at once across the service: warm ones count, and the pool gives way to turns near it. */
  runningSandboxes: number;
  /** Sandboxes the service may start in a minute (Cloud Run's runJob quota): warm ones count. */
  startsPerMinute: number;
  log: (message: string) => void;
}

/** What a claim route's long poll comes to: the turn that claimed the sandbox, nothing yet, or never. */
export type ClaimWait = { turnId: string } | 'wait' | 'gone';

/** How long the claim route holds a warm sandbox's request before it is told to ask again. */
export const CLAIM_POLL_MS = 25_000;
/** A record whose launch never named its sandbox (runJob with its retries takes seconds) is given up after this. */
const LAUNCH_LOST_AFTER_MS = 2 * 60_000;
/** A sandbox whose launch never brought its runner to ask for a turn is given up after this. */
const NEVER_SEEN_AFTER_MS = 5 * 60_000;
/** What a warm sandbox may run past its idle time and its turn's limit, to report and be stopped. */
const WIND_DOWN_SECONDS = 60;
/**
 * How long before its expiry a warm sandbox stops counting towards the pool: the sweeper's period
 * (a minute) and an execution's start (seconds) fit in it.
 */
const RENEW_AHEAD_MS = 90_000;
/** Warm sandboxes that end young, one after the other, are started again ever more slowly, up to this. */
const MAX_RESTART_DELAY_MS = 60_000;

/**
 * Sandboxes started before their turns: a prompt finds one set up and waiting, and the time a
 * sandbox takes to start (seconds for a Cloud Run execution) is spent before anyone waits for it.
 * Each is used by one turn only, then torn down; it holds no turn and no token until a turn claims
 * it (in the store, so two instances never claim one sandbox), and only then does its runner hear
 * of the turn and get the turn's token, from the claim route. The pool is a number of records in
 * the store, shared by every instance: any of them fills it, and each claim takes one.
 */
export class WarmPool {
  /** The local warm sandboxes this process started and follows (they die with it). */
  private readonly handles = new Map<string, WarmSandboxHandle>();
  /** Those of them a turn claimed: they are their turn's to stop. */
  private readonly claimedHere = new Set<string>();
  /** Those of them the pool stopped itself: their end is no failure. */
  private readonly retired = new Set<string>();
  private filling: Promise<void> | undefined;
  private fillAgain = false;
  /** Starts already counted against the service's starts per minute (see fill). */
  private prepaid = 0;
  private youngEnds = 0;
  private closed = false;
  private readonly closing = new AbortController();

  constructor(private readonly deps: WarmPoolDeps) {}

  get enabled(): boolean {
    return this.deps.settings.size > 0 && this.deps.launcher.launchWarm !== undefined;
  }

  /**
   * Binds a warm sandbox to the queued turn, which moves to `starting` with it (and `events`):
   * the sandbox's runner gets the turn from the claim route. Undefined when none is ready; the
   * handle is undefined when this launcher cannot follow the sandbox (then the turn is settled
   * by reconciling it, as one whose instance stopped).
   */
  async claim(turnId: string, events: (turn: Turn) => NewTurnEvent[]): Promise<{ turn: Turn; handle: SandboxHandle | undefined } | undefined> {
    if (!this.enabled) return undefined;
    const claimed = await this.deps.store.claimWarmSandbox(turnId, new Date(), { events });
    if (claimed === undefined || claimed.sandbox.ref === null) return undefined;
    const local = this.handles.get(claimed.sandbox.id);
    if (local !== undefined) {
      this.claimedHere.add(claimed.sandbox.id);
      local.claimed(this.deps.turnTimeoutSeconds);
    }
    return { turn: claimed.turn, handle: local ?? this.deps.launcher.reattach(claimed.sandbox.ref) };
  }

  /** The warm sandbox a pool token was minted for, while it is valid. */
  holderOf(poolToken: string): string | undefined {
    return this.deps.tokens.verify(poolToken)?.sandboxId;
  }

  /**
   * What the warm sandbox's runner hears when it asks for its turn: the turn that claimed it (again,
   * should it ask again), or, once a turn claims it within CLAIM_POLL_MS, that one; 'wait' when
   * none did by then, 'gone' when it will get none (expired, removed). Asking is what makes it
   * ready to be claimed.
   */
  async awaitClaim(sandboxId: string, hungUp: AbortSignal): Promise<ClaimWait> {
    const { store } = this.deps;
    const now = new Date();
    const sandbox = await store.getWarmSandbox(sandboxId);
    if (sandbox === undefined) return 'gone';
    if (sandbox.turnId !== null) return { turnId: sandbox.turnId };
    if (!idle(sandbox, now)) return 'gone';
    // Seen lately enough to be claimed until its next ask: each write is a Firestore write, and
    // a sandbox asks every CLAIM_POLL_MS, so only every other ask writes.
    const seenLately = sandbox.seenAt !== null && now.getTime() - Date.parse(sandbox.seenAt) < WARM_READY_WINDOW_MS - CLAIM_POLL_MS - 5_000;
    if (!seenLately && (await store.updateWarmSandbox(sandboxId, { seenAt: now.toISOString() })) === undefined) return 'gone';
    const expiresInMs = Date.parse(sandbox.expiresAt) - now.getTime();
    return new Promise<ClaimWait>((resolve) => {
      let stop = () => {};
      const finish = (answer: ClaimWait) => {
        clearTimeout(timer);
        hungUp.removeEventListener('abort', onHangUp);
        stop();
        resolve(answer);
      };
      const onHangUp = () => finish('wait');
      // At the end of the wait the record is read once more: a claim whose news the watch missed
      // (a listener that failed) is answered now, not lost to a 'gone' at the sandbox's expiry.
      const timer = setTimeout(
        () => {
          void store.getWarmSandbox(sandboxId).then(
            (latest) => finish(latest?.turnId ? { turnId: latest.turnId } : latest === undefined || expiresInMs <= CLAIM_POLL_MS ? 'gone' : 'wait'),
            () => finish('wait'),
          );
        },
        Math.min(CLAIM_POLL_MS, expiresInMs),
      );
      hungUp.addEventListener('abort', onHangUp);
      stop = store.watchWarmSandbox(sandboxId, (claimed) => finish(claimed?.turnId ? { turnId: claimed.turnId } : 'gone'));
    });
  }

  /**
   * Starts warm sandboxes until `size` are idle, fewer as the service nears its running cap (so that
   * warm ones and running turns together stay within it); stops the idle ones past that; forgets
   * the ones that are over. Concurrent calls share one run. Each start counts against the service's
   * sandbox starts per minute (Cloud Run's runJob quota), but `prepaid` of them: a turn that claimed
   * a warm sandbox was counted when it was admitted, and launched nothing, so its refill is paid.
   */
  fill(prepaid = 0): Promise<void> {
    if (!this.enabled || this.closed) return Promise.resolve();
    this.prepaid += prepaid;
    if (this.filling !== undefined) {
      // What it judged by may already be out of date (a turn ended meanwhile): it runs once more.
      this.fillAgain = true;
      return this.filling;
    }
    this.filling = (async () => {
      do {
        this.fillAgain = false;
        await this.fillOnce().catch((error: unknown) => this.deps.log(`warm pool: filling failed: ${(error as Error).message}`));
      } while (this.fillAgain && !this.closed);
      // A start paid for and not needed (the pool was full) was counted once too often: no harm.
      this.prepaid = 0;
    })().finally(() => (this.filling = undefined));
    return this.filling;
  }

  /** Warm sandboxes of a process that stopped died with it (local ones): their records go. */
  async recover(): Promise<void> {
    if (this.deps.launcher.sandboxesOutliveProcess) return;
    for (const sandbox of await this.deps.store.listWarmSandboxes()) await this.deps.store.removeWarmSandbox(sandbox.id);
  }

  /**
   * Stops filling. Locally it also stops this process's warm sandboxes (they would die with it);
   * a Cloud Run execution outlives the instance that started it, and waits on for any instance to
   * claim it. A claimed one is its turn's to end.
   */
  async close(): Promise<void> {
    this.closed = true;
    this.closing.abort();
    await this.filling;
    if (this.deps.launcher.sandboxesOutliveProcess) return;
    const idleOnes = [...this.handles].filter(([id]) => !this.claimedHere.has(id));
    await Promise.all(idleOnes.map(([, handle]) => handle.cancel().catch(() => undefined)));
    await Promise.all(idleOnes.map(([, handle]) => handle.ended));
  }

  private async fillOnce(): Promise<void> {
    const { store, settings } = this.deps;
    const now = new Date();
    const all = await this.prune(await store.listWarmSandboxes(), now);
    const running = (await store.listUnfinishedTurns()).length + (await store.listTurnsHoldingSandboxes()).length;
    // One about to expire is replaced before it does, so that the pool has no gap while the new one
    // starts (seconds in the cloud, where only the next claim or sweep would notice); until it
    // stops it still counts against the running cap.
    const countFrom = new Date(now.getTime() + Math.min(RENEW_AHEAD_MS, (settings.idleSeconds * 1000) / 3));
    const idleOnes = all.filter((sandbox) => idle(sandbox, countFrom));
    const expiring = all.filter((sandbox) => idle(sandbox, now)).length - idleOnes.length;
    const target = Math.min(settings.size, Math.max(0, this.deps.runningSandboxes - running - expiring));
    for (const extra of idleOnes.slice(target)) await this.retire(extra, `more than the ${target} the pool may hold now`);
    for (let n = idleOnes.length; n < target && !this.closed; n++) {
      if (!(await this.startOne(target, countFrom))) break;
    }
  }

  /** Forgets the sandboxes that are over (claimed by a turn that is final, expired, never up): the rest. */
  private async prune(sandboxes: WarmSandbox[], now: Date): Promise<WarmSandbox[]> {
    const kept: WarmSandbox[] = [];
    for (const sandbox of sandboxes) {
      const over = await this.overBecause(sandbox, now);
      if (over !== undefined) await this.retire(sandbox, over);
      else kept.push(sandbox);
    }
    return kept;
  }

  /** Why the sandbox is over (its turn is final, its time is up, it never came up or went silent), if it is. */
  private async overBecause(sandbox: WarmSandbox, now: Date): Promise<string | undefined> {
    if (this.handles.has(sandbox.id)) return undefined; // followed here: removed when it ends
    if (sandbox.turnId !== null) {
      const turn = await this.deps.store.getTurn(sandbox.turnId);
      return turn === undefined || isFinal(turn.status) ? 'its turn is over' : undefined;
    }
    const t = now.getTime();
    if (Date.parse(sandbox.expiresAt) + WIND_DOWN_SECONDS * 1000 < t) return 'its time is up';
    // Its launch was cut off (the instance lost its CPU, the request its time): nothing runs for it.
    if (sandbox.ref === null) return t - Date.parse(sandbox.createdAt) > LAUNCH_LOST_AFTER_MS ? 'its launch never finished' : undefined;
    if (sandbox.seenAt === null) return t - Date.parse(sandbox.createdAt) > NEVER_SEEN_AFTER_MS ? 'its runner never asked for a turn' : undefined;
    return t - Date.parse(sandbox.seenAt) > 2 * WARM_READY_WINDOW_MS ? 'its runner stopped asking for a turn' : undefined;
  }

  /**
   * Stops a warm sandbox no turn holds, wherever it runs, and removes its record; one claimed by
   * then (a claim may come between the pool's reading and this) is left to its turn. One claimed
   * before (its turn is over) only loses its record.
   */
  private async retire(sandbox: WarmSandbox, why: string): Promise<void> {
    if (sandbox.turnId !== null) {
      await this.deps.store.removeWarmSandbox(sandbox.id);
      return;
    }
    if (!(await this.deps.store.removeIdleWarmSandbox(sandbox.id))) return;
    this.deps.log(`warm pool: retiring warm sandbox ${sandbox.id}: ${why}`);
    this.retired.add(sandbox.id);
    const handle = this.handles.get(sandbox.id) ?? (sandbox.ref === null ? undefined : this.deps.launcher.reattach(sandbox.ref));
    await handle?.cancel().catch((error: unknown) => this.deps.log(`warm pool: stopping ${sandbox.id} failed: ${String(error)}`));
  }

  /** Starts one warm sandbox, if fewer than `target` are idle at `countFrom` (judged in the store); whether it did. */
  private async startOne(target: number, countFrom: Date): Promise<boolean> {
    const { store, launcher, settings, tokens } = this.deps;
    const now = new Date();
    const id = randomUUID();
    const expiresAt = new Date(now.getTime() + settings.idleSeconds * 1000);
    const sandbox: WarmSandbox = { id, ref: null, createdAt: now.toISOString(), seenAt: null, expiresAt: expiresAt.toISOString(), turnId: null };
    const startsPerMinute = this.prepaid > 0 ? Number.POSITIVE_INFINITY : this.deps.startsPerMinute;
    const added = await store.addWarmSandbox(sandbox, target, now, { idleAt: countFrom, startsPerMinute });
    if (!added.added) {
      if ('limitHit' in added) this.deps.log(`warm pool: no warm sandbox started now: ${added.limitHit.message}`);
      return false;
    }
    if (this.prepaid > 0) this.prepaid -= 1;
    const poolToken = tokens.mint({ sandboxId: id, exp: Math.ceil(expiresAt.getTime() / 1000) + WIND_DOWN_SECONDS });
    let handle: WarmSandboxHandle;
    try {
      // launchWarm is there: enabled says so.
      handle = await launcher.launchWarm!({
        sandboxId: id,
        poolToken,
        timeoutSeconds: settings.idleSeconds + this.deps.turnTimeoutSeconds + WIND_DOWN_SECONDS,
      });
    } catch (error) {
      await store.removeWarmSandbox(id);
      this.deps.log(`warm pool: a warm sandbox could not be started: ${(error as Error).message}`);
      return false;
    }
    // A local one is followed to its end; a Cloud Run execution is not watched while it waits
    // (CloudRunLauncher.launchWarm), and its record is pruned by whoever fills the pool next.
    if (!launcher.sandboxesOutliveProcess) {
      this.handles.set(id, handle);
      void handle.ended.then(() => this.ended(id, now));
    }
    await store.updateWarmSandbox(id, { ref: handle.ref });
    return true;
  }

  /** A warm sandbox this process followed is gone: its record goes, and the pool is filled again. */
  private async ended(id: string, startedAt: Date): Promise<void> {
    this.handles.delete(id);
    const claimed = this.claimedHere.delete(id);
    const retired = this.retired.delete(id);
    await this.deps.store.removeWarmSandbox(id).catch((error: unknown) => this.deps.log(`warm pool: forgetting ${id} failed: ${String(error)}`));
    if (this.closed) return;
    // One that ends young without a turn, unless the pool stopped it, failed: a pool that cannot
    // start is not started in a loop.
    const young = !claimed && !retired && Date.now() - startedAt.getTime() < this.deps.settings.idleSeconds * 1000 - CLAIM_POLL_MS;
    this.youngEnds = young ? this.youngEnds + 1 : 0;
    if (young) {
      this.deps.log(`warm pool: warm sandbox ${id} ended before its time without a turn`);
      const delay = Math.min(MAX_RESTART_DELAY_MS, 500 * 2 ** this.youngEnds);
      const waited = await sleep(delay, true, { signal: this.closing.signal }).catch(() => false);
      if (!waited) return;
    }
    await this.fill();
  }
}
