import { describe, expect, it } from 'vitest';
import { TurnEventType } from '../../functions/src/contract/event-types.js';
import { agentStepEvent, TurnEventBody } from '../../functions/src/contract/events.js';
import { AgentEvent } from '../../functions/src/contract/runner.js';
import { emptyUsage, TurnStatus } from '../../functions/src/contract/turn.js';
import { turnEventOf } from '../../functions/src/domain/turn-event.js';
import { FINAL_STATUSES, isFinal, statesBefore, UNFINISHED } from '../../functions/src/domain/turn-state.js';
import { addUsage, holdsSlot, newTurn, TurnRecord } from '../../functions/src/domain/turn.js';

const made = {
  id: 't1',
  conversationId: 'c1',
  userId: 'u1',
  prompt: 'hi',
  createdAt: '2020-01-01T00:00:00.000Z',
  deadlineAt: '2020-01-01T00:10:00.000Z',
};

describe('the turn state machine', () => {
  it('splits the states into unfinished and final ones', () => {
    expect([...UNFINISHED, ...FINAL_STATUSES].sort()).toEqual([...TurnStatus.options].sort());
    expect(UNFINISHED).toEqual(['queued', 'starting', 'running']);
    for (const status of FINAL_STATUSES) expect(isFinal(status)).toBe(true);
  });

  it('moves forward one working state at a time, and from any of them to a final state', () => {
    expect(statesBefore('queued')).toEqual([]);
    expect(statesBefore('starting')).toEqual(['queued']);
    expect(statesBefore('running')).toEqual(['starting']);
    for (const status of FINAL_STATUSES) expect(statesBefore(status)).toEqual(UNFINISHED);
  });
});

describe('turn records', () => {
  it('makes a new turn queued, with nothing yet spent or set', () => {
    expect(newTurn(made)).toEqual({
      ...made,
      options: {},
      status: 'queued',
      reason: null,
      text: null,
      usage: emptyUsage(),
      costUsd: 0,
      startedAt: null,
      finishedAt: null,
      uploadedStateKey: null,
      idempotencyKey: null,
      sandboxRef: null,
      stoppedBy: null,
      resultDigest: null,
      holdsSandbox: false,
      egressConnections: 0,
      egressBytes: 0,
    });
  });

  it('gives each new turn its own usage', () => {
    const first = newTurn(made);
    first.usage.modelCalls = 3;
    expect(newTurn(made).usage).toEqual(emptyUsage());
  });

  it('reads a record written before later fields existed with their defaults, and drops what is not a field', () => {
    const old = { ...made, status: 'succeeded', reason: null, text: 'done', usage: emptyUsage(), costUsd: 0.5, lastEventSeq: 4 };
    const turn = TurnRecord.parse(old);
    expect(turn).toMatchObject({
      status: 'succeeded',
      text: 'done',
      costUsd: 0.5,
      sandboxRef: null,
      stoppedBy: null,
      resultDigest: null,
      holdsSandbox: false,
    });
    expect(turn).not.toHaveProperty('lastEventSeq');
  });

  it('refuses a record whose stoppedBy is no limit', () => {
    expect(() => TurnRecord.parse({ ...made, stoppedBy: 'daily_mood' })).toThrow();
  });

  it('sums two usages field by field', () => {
    const a = { inputTokens: 1, outputTokens: 2, cacheCreationInputTokens: 3, cacheReadInputTokens: 4, modelCalls: 5 };
    expect(addUsage(a, a)).toEqual({ inputTokens: 2, outputTokens: 4, cacheCreationInputTokens: 6, cacheReadInputTokens: 8, modelCalls: 10 });
    expect(addUsage(a, emptyUsage())).toEqual(a);
  });

  it('counts a turn against the running limits while unfinished, or while its sandbox may not be gone', () => {
    expect(holdsSlot(newTurn({ ...made, status: 'running' }))).toBe(true);
    expect(holdsSlot(newTurn({ ...made, status: 'succeeded' }))).toBe(false);
    expect(holdsSlot(newTurn({ ...made, status: 'succeeded', holdsSandbox: true }))).toBe(true);
  });
});

describe('turn events', () => {
  it('has a value for every type of the stream', () => {
    expect(Object.values(TurnEventType).sort()).toEqual(TurnEventBody.options.map((option) => option.shape.type.value).sort());
  });

  it("puts a runner's step under data, as watchers see it", () => {
    const steps = AgentEvent.array().parse([
      { type: 'text', text: 'hi' },
      { type: 'tool_use', name: 'Bash', summary: 'ls' },
      { type: 'tool_result', summary: 'a b', isError: false },
    ]);
    const events = steps.map(agentStepEvent);
    expect(events).toEqual([
      { type: 'text', data: { text: 'hi' } },
      { type: 'tool_use', data: { name: 'Bash', summary: 'ls' } },
      { type: 'tool_result', data: { summary: 'a b', isError: false } },
    ]);
    for (const event of events) expect(TurnEventBody.parse(event)).toEqual(event);
  });

  it('reads a stored event of a known type back as it was written', () => {
    const stored = { turnId: 't1', seq: 2, type: 'text', data: { text: 'hi' }, at: made.createdAt };
    expect(turnEventOf(stored)).toEqual(stored);
    expect(() => turnEventOf({ ...stored, type: 'mystery' })).toThrow();
    expect(() => turnEventOf({ ...stored, seq: 'two' })).toThrow();
  });
});
