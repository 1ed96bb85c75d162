import { Router, type Request, type Response } from 'express';
import type { z } from 'zod';
import type { Authenticator } from '../auth/authenticator.js';
import {
  CreateConversationRequest,
  ListConversationsQuery,
  PostConversationRequest,
  ResourceId,
  type ConversationList,
  type CreatedConversation,
  type ConversationView,
  type TurnView,
} from '../contract/api.js';
import { relativeLink } from '../contract/relative-link.js';
import { fillPath, PUBLIC_ROUTES } from '../contract/routes.js';
import { startedTurnView } from '../contract/turn-links.js';
import { ServiceError } from '../conversations/errors.js';
import { secondsUntilNextUtcDay } from '../domain/quota.js';
import type { ConversationService } from '../conversations/service.js';
import type { WorkspaceService } from '../conversations/workspace-service.js';
import { conversationSummary, turnView } from '../conversations/views.js';
import { jsonBody } from './body.js';
import { KeyedSlots } from './keyed-slots.js';
import { sendError } from './errors.js';
import { streamTurnEvents } from './turn-events-stream.js';
import { addWorkspaceRoutes } from './workspace-routes.js';

type Params = { conversationId: string; turnId: string };

/** The public API: authenticate, validate, hand over to the service, map its answer. */
export function publicRoutes(
  service: ConversationService,
  workspace: WorkspaceService,
  auth: Authenticator,
  limits: { openRequestsPerUser: number; maxFileBytes: number },
): Router {
  const router = Router();
  // Each event stream and each answer waited for costs memory and a listener on the store: one
  // user holds only so many open at once.
  const open = new KeyedSlots(limits.openRequestsPerUser);
  const holdOpen = (userId: string, res: Response) => {
    if (!open.take(userId)) {
      throw new ServiceError('rate_limited', `at most ${open.max} event streams and waiting requests may be open at once per user`, {
        limit: 'open_requests',
        max: open.max,
        retryAfterSeconds: 5,
      });
    }
    res.on('close', () => open.give(userId));
  };
  const userOf = async (req: Request): Promise<string> => {
    const result = await auth.authenticate(req.headers);
    if (!result.ok) throw new ServiceError('unauthenticated', result.message);
    return result.userId;
  };

  // An id that is not of the API's shape names nothing: 404, as for an id that does not exist.
  for (const [param, what] of [
    ['conversationId', 'conversation'],
    ['turnId', 'turn'],
  ] as const) {
    router.param(param, (_req, _res, next, value: string) => {
      next(ResourceId.safeParse(value).success ? undefined : new ServiceError('not_found', `${what} not found`));
    });
  }

  addWorkspaceRoutes(router, workspace, userOf, limits);

  router.post(PUBLIC_ROUTES.startTurn, async (req, res) => {
    const userId = await userOf(req);
    const request = parse(PostConversationRequest, await jsonBody(req));
    const idempotencyKey = req.get('idempotency-key');
    if (idempotencyKey !== undefined && (idempotencyKey.length === 0 || idempotencyKey.length > 200)) {
      throw new ServiceError('invalid_request', 'Idempotency-Key must be 1-200 characters');
    }
    const respondAsync = /\brespond-async\b/i.test(req.get('prefer') ?? '');
    // A client that will wait takes its place before the turn starts: refused, it starts nothing.
    if (!respondAsync) holdOpen(userId, res);
    const turn = await service.submit(userId, request, idempotencyKey);
    if (respondAsync) {
      // The path as the client sent it (absolute-form targets too: RFC 9112 section 3.2.2).
      const requestPath = new URL(req.originalUrl, 'http://request.invalid').pathname;
      const body = startedTurnView({ conversationId: turn.conversationId, turnId: turn.id, status: turn.status }, requestPath);
      res.status(202).location(body.links.turn).json(body);
      return;
    }
    const hungUp = new AbortController();
    res.on('close', () => hungUp.abort());
    const finished = await service.waitForFinal(turn, hungUp.signal);
    if (finished !== undefined) sendFinishedTurn(res, finished);
  });

  router.get(PUBLIC_ROUTES.usage, async (req, res) => {
    res.json(await service.usage(await userOf(req)));
  });

  router.post(PUBLIC_ROUTES.conversations, async (req, res) => {
    const conversation = await service.createConversation(await userOf(req), parse(CreateConversationRequest, await jsonBody(req)));
    const body: CreatedConversation = { conversationId: conversation.id };
    // Relative to the path as the client sent it, as the 202's links are (contract/turn-links.ts).
    const requestPath = new URL(req.originalUrl, 'http://request.invalid').pathname;
    const target = fillPath(PUBLIC_ROUTES.conversation, { conversationId: conversation.id });
    res.status(201).location(relativeLink(requestPath, target)).json(body);
  });

  router.get(PUBLIC_ROUTES.conversations, async (req, res) => {
    const userId = await userOf(req);
    const query = parse(ListConversationsQuery, req.query);
    const page = await service.listConversations(userId, query.limit, query.cursor);
    const body: ConversationList = { conversations: page.conversations.map(conversationSummary), nextCursor: page.nextCursor };
    res.json(body);
  });

  router.get(PUBLIC_ROUTES.conversation, async (req: Request<Params>, res) => {
    const { conversation, turns } = await service.getConversation(await userOf(req), req.params.conversationId);
    const body: ConversationView = {
      ...conversationSummary(conversation),
      options: conversation.options,
      turns: turns.map((t) => ({ ...turnView(t), prompt: t.prompt, options: t.options })),
    };
    res.json(body);
  });

  router.delete(PUBLIC_ROUTES.conversation, async (req: Request<Params>, res) => {
    await service.deleteConversation(await userOf(req), req.params.conversationId);
    res.status(204).end();
  });

  router.get(PUBLIC_ROUTES.turn, async (req: Request<Params>, res) => {
    res.json(turnView(await service.getTurn(await userOf(req), req.params.conversationId, req.params.turnId)));
  });

  router.post(PUBLIC_ROUTES.turnCancel, async (req: Request<Params>, res) => {
    res.json(turnView(await service.cancel(await userOf(req), req.params.conversationId, req.params.turnId)));
  });

  router.get(PUBLIC_ROUTES.turnEvents, async (req: Request<Params>, res) => {
    const userId = await userOf(req);
    holdOpen(userId, res);
    await streamTurnEvents(service, userId, req, res);
  });

  return router;
}

function parse<T extends z.ZodType>(schema: T, value: unknown): z.infer<T> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
  throw new ServiceError('invalid_request', issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; '), { issues });
}

/** A finished turn: 200 when it succeeded, otherwise the error its final state stands for. */
function sendFinishedTurn(res: Response, view: TurnView): void {
  if (view.stoppedBy !== null) {
    // A daily budget ran out mid-turn: the same answer a new prompt would get now.
    const retryAfterSeconds = secondsUntilNextUtcDay(new Date());
    return sendError(res, 'rate_limited', view.reason ?? `limit ${view.stoppedBy} reached`, { ...view, limit: view.stoppedBy, retryAfterSeconds });
  }
  switch (view.status) {
    case 'succeeded':
      res.json(view);
      return;
    case 'timed_out':
      return sendError(res, 'timed_out', view.reason ?? 'the turn timed out', view);
    case 'cancelled':
      return sendError(res, 'conflict', view.reason ?? 'the turn was cancelled', view);
    default:
      return sendError(res, 'sandbox_failed', view.reason ?? 'the turn failed', view);
  }
}
