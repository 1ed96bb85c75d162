import { Router } from 'express';
import type { GoogleIdTokenVerifier } from '../auth/google-id-token.js';
import { OPS_ROUTES } from '../contract/routes.js';
import type { TurnLifecycle } from '../conversations/turn-lifecycle.js';
import { sendError } from './errors.js';

/**
 * The sweeper: Cloud Scheduler calls it every minute with its service account's ID token. It
 * settles turns that are over but unsettled: an instance that gets no CPU between requests
 * (request-based billing: cloud.google.com/run/docs/tips/general) cannot notice a sandbox dying.
 */
export function opsRoutes(lifecycle: TurnLifecycle, caller: GoogleIdTokenVerifier): Router {
  const router = Router();
  router.post(OPS_ROUTES.sweep, async (req, res) => {
    const refusal = await caller.refusal(req.headers.authorization);
    if (refusal !== undefined) return sendError(res, 'unauthenticated', `the sweeper takes only its scheduler's ID token: ${refusal}`);
    const swept = await lifecycle.sweep();
    // The warm pool is topped up here too: expired warm sandboxes are replaced even when no prompt comes.
    await lifecycle.deps.warm?.fill();
    res.json(swept);
  });
  return router;
}
