import { fillPath, INTERNAL_ROUTES } from './routes.js';

/** The runner's routes on the API (routes.ts), filled in for one turn. Imports nothing that needs zod. */
export const runnerPaths = {
  turn: (turnId: string) => fillPath(INTERNAL_ROUTES.turn, { turnId }),
  state: (turnId: string) => fillPath(INTERNAL_ROUTES.state, { turnId }),
  events: (turnId: string) => fillPath(INTERNAL_ROUTES.events, { turnId }),
  result: (turnId: string) => fillPath(INTERNAL_ROUTES.result, { turnId }),
  egress: (turnId: string) => fillPath(INTERNAL_ROUTES.egress, { turnId }),
  warmClaim: (sandboxId: string) => fillPath(INTERNAL_ROUTES.warmClaim, { sandboxId }),
  modelBase: INTERNAL_ROUTES.modelBase,
} as const;

/**
 * One of the paths above under API_URL, keeping API_URL's own path: a function is served at
 * https://REGION-PROJECT.cloudfunctions.net/NAME, and the front end strips /NAME before the API
 * sees the request (cloud.google.com/run/docs/triggering/https-request). `new URL(path, apiUrl)`
 * would drop /NAME and reach another function, or none.
 */
export function runnerUrl(apiUrl: string, path: string): URL {
  const base = new URL(apiUrl);
  return new URL(`${base.origin}${base.pathname.replace(/\/+$/, '')}${path}`);
}
