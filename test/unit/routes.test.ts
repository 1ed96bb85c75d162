import { describe, expect, test } from 'vitest';
import { fillPath, INTERNAL_ROUTES, PUBLIC_ROUTES } from '../../functions/src/contract/routes.js';
import { runnerPaths } from '../../functions/src/contract/runner-paths.js';
import { resolveTurnLinks, startedTurnView, turnLinks } from '../../functions/src/contract/turn-links.js';

describe('the routes of the contract', () => {
  test('fill in each parameter as one escaped path segment', () => {
    expect(fillPath(PUBLIC_ROUTES.turnEvents, { conversationId: 'c1', turnId: 'a/b?' })).toBe('/api/conversations/c1/turns/a%2Fb%3F/events');
    expect(fillPath(PUBLIC_ROUTES.usage, {})).toBe('/api/usage');
    expect(fillPath(PUBLIC_ROUTES.file, { conversationId: 'c1', path: 'src/a b/#1.ts' })).toBe('/api/conversations/c1/files/src/a%20b/%231.ts');
    expect(runnerPaths.result('t 1')).toBe('/internal/turns/t%201/result');
    expect(fillPath(INTERNAL_ROUTES.state, { turnId: 't' })).toBe(runnerPaths.state('t'));
  });

  test("give a started turn's links relative to the request, so that they keep a prefix the API never sees", () => {
    const ids = { conversationId: 'c1', turnId: 't1' };
    const body = startedTurnView({ ...ids, status: 'queued' }, PUBLIC_ROUTES.startTurn);
    expect(body).toEqual({
      ...ids,
      status: 'queued',
      links: {
        turn: 'conversations/c1/turns/t1',
        events: 'conversations/c1/turns/t1/events',
        cancel: 'conversations/c1/turns/t1/cancel',
        conversation: 'conversations/c1',
      },
    });
    expect(resolveTurnLinks(body.links, 'https://host.example/NAME/api/conversation')).toEqual({
      turn: 'https://host.example/NAME/api/conversations/c1/turns/t1',
      events: 'https://host.example/NAME/api/conversations/c1/turns/t1/events',
      cancel: 'https://host.example/NAME/api/conversations/c1/turns/t1/cancel',
      conversation: 'https://host.example/NAME/api/conversations/c1',
    });
    // From the turn itself, each link still leads to the same place.
    const fromTurn = turnLinks(ids, fillPath(PUBLIC_ROUTES.turn, ids));
    expect(resolveTurnLinks(fromTurn, 'https://host.example/NAME/api/conversations/c1/turns/t1')).toEqual(
      resolveTurnLinks(body.links, 'https://host.example/NAME/api/conversation'),
    );
  });
});
