import path from 'node:path';
import { FunctionInstance, type FunctionSource } from './instance.js';

/**
 * The instances of one function, as Cloud Run scales a function's service: started on demand up
 * to the maximum, each serving up to `concurrency` requests at once, frozen whenever none is in
 * flight, and stopped once idle for a while.
 */

export interface FunctionSettings {
  /** The function's name: the path prefix of its cloudfunctions.net-style URL, and K_SERVICE. */
  name: string;
  source: FunctionSource;
  env: Record<string, string>;
  /** `maxInstanceCount` (default 100, as Cloud Run's default maximum). */
  maxInstances?: number;
  /** `maxInstanceRequestConcurrency` (default 1, as for a function: https://cloud.google.com/functions/docs/configuring/concurrency). */
  concurrency?: number;
  /** `timeoutSeconds`: the request timeout (default 60 s, a function's default: https://cloud.google.com/functions/docs/configuring/timeout). */
  timeoutSeconds?: number;
  /**
   * How long a request waits for room when every instance is at its concurrency and no new one
   * may start, before it fails with 429. "Requests are pending for up to ~30 s" (FACTS, from
   * https://cloud.google.com/functions/docs/configuring/concurrency); older pages say 60 s.
   */
  pendingTimeoutMs?: number;
  /**
   * How long an instance with no request stays before it is stopped. Cloud Run keeps idle
   * instances "for up to 15 minutes" (https://cloud.google.com/run/docs/about-instance-autoscaling).
   */
  idleStopMs?: number;
}

/** A request's hold on one instance: release it once the request is over, however it ended. */
export interface Lease {
  instance: FunctionInstance;
  /** Whether this request had to start the instance (a cold start). */
  cold: boolean;
  release(): void;
}

const HISTORY_KEPT = 100;

export class NoInstanceError extends Error {
  override name = 'NoInstanceError';
}

interface Slot {
  instance: FunctionInstance;
  inFlight: number;
  idleTimer?: NodeJS.Timeout;
}

interface Waiter {
  resolve(lease: Lease): void;
  reject(error: Error): void;
  timer?: NodeJS.Timeout;
  /** Set when this waiter caused an instance to start. */
  startedOne: boolean;
}

export class InstancePool {
  readonly maxInstances: number;
  readonly concurrency: number;
  readonly timeoutSeconds: number;
  private readonly pendingTimeoutMs: number;
  private readonly idleStopMs: number;
  private readonly slots = new Set<Slot>();
  private starting = 0;
  private readonly waiters: Waiter[] = [];
  private started = 0;
  private closed = false;
  /** The instances this pool started, oldest first (the last HISTORY_KEPT): what tests and the bench observe. */
  readonly history: FunctionInstance[] = [];

  constructor(
    readonly settings: FunctionSettings,
    private readonly dataDir: string,
    private readonly log: (message: string) => void,
  ) {
    this.maxInstances = settings.maxInstances ?? 100;
    this.concurrency = settings.concurrency ?? 1;
    this.timeoutSeconds = settings.timeoutSeconds ?? 60;
    this.pendingTimeoutMs = settings.pendingTimeoutMs ?? 30_000;
    this.idleStopMs = settings.idleStopMs ?? 15 * 60_000;
  }

  /** The instances running now (started and not stopped). */
  get instances(): FunctionInstance[] {
    return [...this.slots].map((s) => s.instance);
  }

  /** An instance with room for one more request, thawed; starts one if none has room and the maximum allows. */
  acquire(): Promise<Lease> {
    if (this.closed) return Promise.reject(new NoInstanceError('the platform is stopping'));
    const free = this.freeSlot();
    if (free !== undefined) return Promise.resolve(this.lease(free, false));
    return new Promise<Lease>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, startedOne: false };
      this.waiters.push(waiter);
      this.scaleOut();
      // A request an instance is starting for waits for that start (up to the startup limit); the
      // others wait the pending time for room, then fail.
      if (this.waiters.indexOf(waiter) >= this.starting * this.concurrency) {
        waiter.timer = setTimeout(() => {
          this.dropWaiter(waiter);
          reject(new NoInstanceError('The request was aborted because there was no available instance.'));
        }, this.pendingTimeoutMs);
      }
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const waiter of this.waiters.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.reject(new NoInstanceError('the platform is stopping'));
    }
    await Promise.all([...this.slots].map((slot) => this.retire(slot, 'the platform is stopping')));
  }

  private freeSlot(): Slot | undefined {
    // The busiest instance with room, as Cloud Run packs requests to keep few instances warm.
    let best: Slot | undefined;
    for (const slot of this.slots) {
      if (slot.inFlight < this.concurrency && (best === undefined || slot.inFlight > best.inFlight)) best = slot;
    }
    return best;
  }

  private lease(slot: Slot, cold: boolean): Lease {
    slot.inFlight++;
    clearTimeout(slot.idleTimer);
    slot.instance.thaw();
    let released = false;
    return {
      instance: slot.instance,
      cold,
      release: () => {
        if (released) return;
        released = true;
        slot.inFlight--;
        this.afterRelease(slot);
      },
    };
  }

  private afterRelease(slot: Slot): void {
    if (!this.slots.has(slot)) return;
    const waiter = this.waiters.shift();
    if (waiter !== undefined) {
      clearTimeout(waiter.timer);
      waiter.resolve(this.lease(slot, false));
      return;
    }
    if (slot.inFlight > 0) return;
    // Request-based billing: "the instance's access to CPU will be disabled or severely limited"
    // once no request is in flight (https://cloud.google.com/run/docs/configuring/billing-settings,
    // https://cloud.google.com/run/docs/tips/general). Here: none at all.
    slot.instance.freeze();
    slot.idleTimer = setTimeout(() => {
      if (slot.inFlight === 0) void this.retire(slot, 'idle');
    }, this.idleStopMs);
  }

  /** Starts instances for waiters that no starting instance will take, up to the maximum. */
  private scaleOut(): void {
    const unserved = this.waiters.length - this.starting * this.concurrency;
    if (unserved <= 0 || this.slots.size + this.starting >= this.maxInstances || this.closed) return;
    const waiter = this.waiters.find((w) => !w.startedOne);
    if (waiter !== undefined) waiter.startedOne = true;
    this.starting++;
    const id = ++this.started;
    FunctionInstance.start(id, {
      name: this.settings.name,
      source: this.settings.source,
      env: this.settings.env,
      dataDir: path.join(this.dataDir, `instance-${id}`),
      log: this.log,
    }).then(
      (instance) => {
        this.starting--;
        this.history.push(instance);
        if (this.history.length > HISTORY_KEPT) this.history.shift();
        const slot: Slot = { instance, inFlight: 0 };
        if (this.closed) {
          void instance.stop();
          return;
        }
        this.slots.add(slot);
        this.log(`${this.settings.name}: instance #${id} started (pid ${instance.pid}), ${this.slots.size} running`);
        // A crash takes the instance out; Cloud Run starts another for the next request.
        void instance.whenExited().then(() => {
          if (this.slots.delete(slot)) this.log(`${this.settings.name}: instance #${id} exited: ${instance.recentOutput().slice(-500)}`);
          clearTimeout(slot.idleTimer);
          this.scaleOut();
        });
        // The first waiters go to the new instance, up to its concurrency.
        for (let i = 0; i < this.concurrency; i++) {
          const next = this.waiters.shift();
          if (next === undefined) break;
          clearTimeout(next.timer);
          next.resolve(this.lease(slot, next.startedOne));
        }
        if (slot.inFlight === 0) this.afterRelease(slot);
        this.scaleOut();
      },
      (error: unknown) => {
        this.starting--;
        this.log(`${this.settings.name}: instance #${id} failed to start: ${(error as Error).message}`);
        // A container that cannot start fails the requests waiting for it (Cloud Run answers 503).
        for (const next of this.waiters.splice(0)) {
          clearTimeout(next.timer);
          next.reject(new Error(`the instance failed to start: ${(error as Error).message}`));
        }
      },
    );
  }

  private dropWaiter(waiter: Waiter): void {
    const i = this.waiters.indexOf(waiter);
    if (i >= 0) this.waiters.splice(i, 1);
  }

  private async retire(slot: Slot, why: string): Promise<void> {
    if (!this.slots.delete(slot)) return;
    clearTimeout(slot.idleTimer);
    this.log(`${this.settings.name}: instance #${slot.instance.id} stopping (${why}), ${this.slots.size} left`);
    await slot.instance.stop();
  }
}
