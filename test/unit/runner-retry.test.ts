import net from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  ApiError,
  FIRST_CONTACT,
  idempotentVerdict,
  LATER_CALL,
  NetworkError,
  onceOnlyVerdict,
  RunnerApi,
  turnReadVerdict,
} from '../../sandbox-image/runner/api-client.js';
import { retryAfterMs, withRetries, type Clock } from '../../sandbox-image/runner/retry.js';

/** A clock that moves only when the code under test sleeps; random() is fixed. */
function fakeClock(random = 0.5): Clock & { sleeps: number[]; t: number } {
  const clock = {
    t: 0,
    sleeps: [] as number[],
    now: () => clock.t,
    random: () => random,
    sleep: async (ms: number) => {
      clock.sleeps.push(ms);
      clock.t += ms;
    },
  };
  return clock;
}

const refused = () => new NetworkError('ECONNREFUSED', false, 'connect ECONNREFUSED');
const failing = (error: () => Error, times = Infinity) => {
  let calls = 0;
  return {
    get calls() {
      return calls;
    },
    attempt: async () => {
      calls += 1;
      if (calls <= times) throw error();
      return 'ok';
    },
  };
};

describe("the runner's retries", () => {
  it('polls a bridge that is not up yet every 5 ms for the first second, then backs off', async () => {
    const clock = fakeClock();
    const call = failing(refused, 206);
    expect(await withRetries(call.attempt, idempotentVerdict, FIRST_CONTACT, clock)).toBe('ok');
    expect(clock.sleeps.slice(0, 200).every((ms) => ms === 5)).toBe(true);
    const backoff = clock.sleeps.slice(200, 206);
    // Equal jitter at random() = 0.5: three quarters of 250, 500, 1000, ... ms, capped at 5 s.
    expect(backoff).toEqual([187.5, 375, 750, 1500, 3000, 3750]);
  });

  it('keeps trying a first connection for 90 s (Direct VPC egress), and no longer', async () => {
    const clock = fakeClock();
    const call = failing(refused);
    await expect(withRetries(call.attempt, idempotentVerdict, FIRST_CONTACT, clock)).rejects.toBeInstanceOf(NetworkError);
    expect(clock.t).toBe(90_000);
    expect(Math.max(...clock.sleeps)).toBeLessThanOrEqual(5_000);
  });

  it('spreads the retries of sandboxes failing together (jitter) within half to all of each delay', async () => {
    const low = fakeClock(0);
    const high = fakeClock(0.999);
    await withRetries(failing(refused, 3).attempt, idempotentVerdict, LATER_CALL, low);
    await withRetries(failing(refused, 3).attempt, idempotentVerdict, LATER_CALL, high);
    expect(low.sleeps).toEqual([125, 250, 500]);
    expect(high.sleeps.map(Math.round)).toEqual([250, 500, 1000]);
  });

  it('waits as long as Retry-After asks, but never past its budget', async () => {
    const clock = fakeClock();
    const busy = () => new ApiError(503, 'busy', 7_000);
    await withRetries(failing(busy, 1).attempt, idempotentVerdict, LATER_CALL, clock);
    expect(clock.sleeps).toEqual([7_000]);
    const late = fakeClock();
    const never = failing(() => new ApiError(429, 'slow down', 3_600_000));
    await expect(withRetries(never.attempt, idempotentVerdict, LATER_CALL, late)).rejects.toBeInstanceOf(ApiError);
    expect(late.sleeps).toEqual([60_000]);
    expect(never.calls).toBe(2);
  });

  it("does not retry what will not change: a 4xx, a 500, an error that is not the network's", async () => {
    for (const error of [
      new ApiError(401, 'no'),
      new ApiError(409, 'ended'),
      new ApiError(500, 'bug'),
      new NetworkError(undefined, false, 'answer too large'),
    ]) {
      const call = failing(() => error);
      await expect(withRetries(call.attempt, idempotentVerdict, LATER_CALL, fakeClock())).rejects.toBe(error);
      expect(call.calls).toBe(1);
    }
  });

  it('sends progress again only when the API cannot have acted on it', () => {
    expect(onceOnlyVerdict(new NetworkError('ECONNREFUSED', false, ''))).toEqual({ retry: true });
    expect(onceOnlyVerdict(new NetworkError('ECONNRESET', true, ''))).toEqual({ retry: false });
    expect(onceOnlyVerdict(new ApiError(503, '', 1000))).toEqual({ retry: true, afterMs: 1000 });
    expect(onceOnlyVerdict(new ApiError(429, ''))).toEqual({ retry: true });
    expect(onceOnlyVerdict(new ApiError(502, ''))).toEqual({ retry: false });
    expect(onceOnlyVerdict(new ApiError(504, ''))).toEqual({ retry: false });
    expect(idempotentVerdict(new NetworkError('ECONNRESET', true, ''))).toEqual({ retry: true });
    expect(idempotentVerdict(new ApiError(504, ''))).toEqual({ retry: true });
    // The turn read alone waits out a 409: its turn is still queued.
    expect(turnReadVerdict(new ApiError(409, ''))).toEqual({ retry: true, afterMs: 50 });
    expect(turnReadVerdict(new ApiError(401, ''))).toEqual({ retry: false });
    expect(idempotentVerdict(new ApiError(409, ''))).toEqual({ retry: false });
  });

  it('reads Retry-After as seconds or as an HTTP date', () => {
    expect(retryAfterMs('3')).toBe(3000);
    expect(retryAfterMs('Tue, 01 Dec 2026 10:00:10 GMT', Date.parse('Tue, 01 Dec 2026 10:00:00 GMT'))).toBe(10_000);
    expect(retryAfterMs('soon')).toBeUndefined();
    expect(retryAfterMs(undefined)).toBeUndefined();
  });

  it('over real sockets: progress whose request was all sent is not sent again; the result is', async () => {
    // Reads each whole request, then drops the connection unanswered.
    let connections = 0;
    const server = net.createServer((socket) => {
      connections += 1;
      socket.on('data', (chunk) => {
        if (chunk.toString('latin1').includes('}')) socket.destroy();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    try {
      const api = new RunnerApi(`http://127.0.0.1:${port}/prefix`, 'turn-1', 'token', fakeClock());
      await expect(api.postEvents([{ type: 'text', text: 'hi' }])).rejects.toMatchObject({ code: 'ECONNRESET', sent: true });
      expect(connections).toBe(1);
      await expect(api.postResult({ outcome: 'failed', reason: 'x' })).rejects.toBeInstanceOf(NetworkError);
      expect(connections).toBeGreaterThan(10);
    } finally {
      server.close();
    }
  });

  it('over real sockets: a refused connection is tried again, whatever the call', async () => {
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as net.AddressInfo;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const clock = fakeClock();
    const api = new RunnerApi(`http://127.0.0.1:${port}`, 'turn-1', 'token', clock);
    await expect(api.postEvents([{ type: 'text', text: 'hi' }])).rejects.toMatchObject({ code: 'ECONNREFUSED', sent: false });
    // The first call of a runner: tried for FIRST_CONTACT's whole budget.
    expect(clock.t).toBe(FIRST_CONTACT.budgetMs);
  });
});
