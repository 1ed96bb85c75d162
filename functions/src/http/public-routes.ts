import { Router, type Request, type Response } from 'express';
import type { Authenticator } from '../auth/authenticator.js';
import { PostConversationRequest } from '../contract/api.js';
import { ServiceError } from '../conversations/errors.js';
import type { ConversationService } from '../conversations/service.js';
import type { Turn } from '../store/conversation-store.js';
import { jsonBody } from './body.js';
import { sendError } from './errors.js';

/** The public API: parse, authenticate, validate, hand over to the service, map its answer. */
export function publicRoutes(service: ConversationService, auth: Authenticator): Router {
  const router = Router();

  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  router.post('/api/conversation', async (req, res) => {
    const userId = await authenticate(auth, req);
    const body = await jsonBody(req);
    const parsed = PostConversationRequest.safeParse(body);
    if (!parsed.success) {
      const issues = parsed.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
      throw new ServiceError('invalid_request', issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; '), { issues });
    }
    const request = parsed.data;
    const turn = await service.submit(userId, request);
    if (/\brespond-async\b/i.test(req.get('prefer') ?? '')) {
      res.status(202).json({
        conversationId: turn.conversationId,
        turnId: turn.id,
        status: turn.status,
        links: { turn: `/api/conversations/${turn.conversationId}/turns/${turn.id}` },
      });
      return;
    }
    sendTurn(res, service, await service.waitForFinal(turn.id));
  });

  return router;
}

async function authenticate(auth: Authenticator, req: Request): Promise<string> {
  const result = await auth.authenticate(req.headers);
  if (!result.ok) throw new ServiceError('unauthenticated', result.message);
  return result.userId;
}

/** A finished turn: 200 when it succeeded, otherwise the error its final state stands for. */
function sendTurn(res: Response, service: ConversationService, turn: Turn): void {
  const view = service.view(turn);
  switch (turn.status) {
    case 'succeeded':
      res.json(view);
      return;
    case 'timed_out':
      return sendError(res, 'timed_out', turn.reason ?? 'the turn timed out', view);
    case 'cancelled':
      return sendError(res, 'conflict', turn.reason ?? 'the turn was cancelled', view);
    default:
      return sendError(res, 'sandbox_failed', turn.reason ?? 'the turn failed', view);
  }
}
