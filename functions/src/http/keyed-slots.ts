/**
 * At most `max` of something at once per key (a turn's model calls, a user's event streams), in
 * this instance: a bound on what one caller can hold open, not a fair-use quota.
 */
export class KeyedSlots {
  private readonly counts = new Map<string, number>();

  constructor(readonly max: number) {}

  /** Takes a slot for the key, or answers false when it holds them all. */
  take(key: string): boolean {
    const count = this.counts.get(key) ?? 0;
    if (count >= this.max) return false;
    this.counts.set(key, count + 1);
    return true;
  }

  give(key: string): void {
    const count = (this.counts.get(key) ?? 1) - 1;
    if (count <= 0) this.counts.delete(key);
    else this.counts.set(key, count);
  }
}

/**
 * At most `max` units (bytes, say) per key in each minute, in this instance: a bound on how much
 * work one caller can make us do, where each unit costs CPU before anything can be refused.
 */
export class KeyedMinuteAllowance {
  private readonly spent = new Map<string, { minute: number; units: number }>();

  constructor(
    readonly max: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Spends `units` for the key if this minute's allowance has room for them. */
  spend(key: string, units: number): boolean {
    const minute = Math.floor(this.now() / 60_000);
    const entry = this.spent.get(key);
    const used = entry?.minute === minute ? entry.units : 0;
    if (used + units > this.max) return false;
    if (entry?.minute !== minute) this.forgetBefore(minute);
    this.spent.set(key, { minute, units: used + units });
    return true;
  }

  /** Seconds until the next minute, when every allowance is whole again. */
  secondsToNextMinute(): number {
    return Math.max(1, Math.ceil((60_000 - (this.now() % 60_000)) / 1000));
  }

  private forgetBefore(minute: number): void {
    for (const [key, entry] of this.spent) if (entry.minute < minute) this.spent.delete(key);
  }
}
