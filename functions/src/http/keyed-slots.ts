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
