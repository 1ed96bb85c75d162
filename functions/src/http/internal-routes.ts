import { pipeline } from 'node:stream/promises';
import { Router, type Request } from 'express';
import { INTERNAL_ROUTES } from '../contract/routes.js';
import { AgentEvents, RunnerResult } from '../contract/runner.js';
import { ServiceError } from '../conversations/errors.js';
import type { RunnerService } from '../conversations/runner-service.js';
import { bodyStream, jsonBody } from './body.js';

/** The runner's routes. The turn token is the only credential accepted here. */
export function internalRoutes(service: RunnerService): Router {
  const router = Router();
  // Routes whose store operation refuses a final turn itself need only the token's signature;
  // the others read the turn first, so that a void token can neither read nor upload state.
  const claimsOf = (req: Request<{ turnId: string }>) => service.verifyToken(bearer(req), req.params.turnId);
  const turnOf = (req: Request<{ turnId: string }>) => service.authenticateRunner(bearer(req), req.params.turnId);

  router.get(INTERNAL_ROUTES.turn, async (req, res) => {
    res.json(await service.beginRun(claimsOf(req)));
  });

  router.post(INTERNAL_ROUTES.warmClaim, async (req, res) => {
    // A runner that stops waiting (its sandbox stopped) frees the poll at once.
    const hungUp = new AbortController();
    res.once('close', () => hungUp.abort());
    res.json(await service.claimTurn(bearer(req), req.params.sandboxId, hungUp.signal));
  });

  router.get(INTERNAL_ROUTES.state, async (req, res) => {
    const state = await service.openState(await turnOf(req));
    if (state === undefined) {
      res.status(204).end();
      return;
    }
    res.type('application/gzip');
    res.setHeader('content-length', String(state.bytes));
    // A store failing mid-stream ends the response short of its length: the runner sees it broken.
    await pipeline(state.stream, res).catch(() => res.destroy());
  });

  router.put(INTERNAL_ROUTES.state, async (req, res) => {
    const turn = await turnOf(req);
    await service.saveState({ turnId: turn.id, conversationId: turn.conversationId }, bodyStream(req));
    res.status(204).end();
  });

  router.post(INTERNAL_ROUTES.events, async (req, res) => {
    const claims = claimsOf(req);
    const parsed = AgentEvents.safeParse(await jsonBody(req));
    if (!parsed.success) throw new ServiceError('invalid_request', `invalid events: ${parsed.error.message}`);
    await service.recordAgentEvents(claims, parsed.data.events);
    res.status(204).end();
  });

  router.post(INTERNAL_ROUTES.result, async (req, res) => {
    const claims = claimsOf(req);
    const parsed = RunnerResult.safeParse(await jsonBody(req));
    if (!parsed.success) throw new ServiceError('invalid_request', `invalid result: ${parsed.error.message}`);
    const finished = await service.finishFromRunner(claims, parsed.data);
    res.json({ status: finished.status });
  });

  return router;
}

export function bearer(req: Request): string | undefined {
  const match = /^Bearer\s+(\S+)$/i.exec(req.get('authorization') ?? '');
  return match?.[1];
}
