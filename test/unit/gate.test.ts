import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { Gate } from '../../functions/src/conversations/gate.js';

describe('a gate of 2', () => {
  it('runs at most 2 jobs at once, the others in the order they came, a failing one freeing its place', async () => {
    const gate = new Gate(2);
    let running = 0;
    let most = 0;
    const started: number[] = [];
    const job = (i: number) =>
      gate.run(async () => {
        started.push(i);
        running += 1;
        most = Math.max(most, running);
        await sleep(20);
        running -= 1;
        if (i === 1) throw new Error('job 1 fails');
        return i;
      });
    const results = await Promise.allSettled([0, 1, 2, 3, 4].map(job));
    expect(most).toBe(2);
    expect(started).toEqual([0, 1, 2, 3, 4]);
    expect(results.map((r) => (r.status === 'fulfilled' ? r.value : 'failed'))).toEqual([0, 'failed', 2, 3, 4]);
    expect(await gate.run(async () => 'free again')).toBe('free again');
  });
});
