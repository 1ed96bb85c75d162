/**
 * Every path the API serves, as the router registers it (`:name` for a parameter) and as a client
 * fills it in (fillPath). Imports nothing: the runner and the web page use it without zod.
 */

/** The public API (README "API"). */
export const PUBLIC_ROUTES = {
  /** POST: a prompt, in a new conversation or a given one. */
  startTurn: '/api/conversation',
  usage: '/api/usage',
  /** No sign-in needed: what the web page needs before anyone signs in. */
  clientConfig: '/api/client-config',
  conversations: '/api/conversations',
  conversation: '/api/conversations/:conversationId',
  turn: '/api/conversations/:conversationId/turns/:turnId',
  turnEvents: '/api/conversations/:conversationId/turns/:turnId/events',
  turnCancel: '/api/conversations/:conversationId/turns/:turnId/cancel',
  /** GET: the workspace's files as of its last stored state. */
  files: '/api/conversations/:conversationId/files',
  /** GET, PUT, DELETE: one file; the rest of the path is the file's, relative to the workspace. */
  file: '/api/conversations/:conversationId/files/*path',
  /** GET: the whole workspace as one archive (`?format=zip` for a zip). */
  archive: '/api/conversations/:conversationId/archive',
} as const;

/** The runner's routes, authenticated by the turn token alone. */
export const INTERNAL_ROUTES = {
  turn: '/internal/turns/:turnId',
  state: '/internal/turns/:turnId/state',
  events: '/internal/turns/:turnId/events',
  result: '/internal/turns/:turnId/result',
  /** GET, a WebSocket upgrade: one connection out through the egress tunnel (egress/tunnel-protocol.ts). */
  egress: '/internal/turns/:turnId/egress',
  /** POST, a warm sandbox's long poll for the turn that claims it: its pool token only (contract/runner.ts, WarmClaimAnswer). */
  warmClaim: '/internal/warm/:sandboxId/claim',
  /** The model proxy: the Messages API's own paths go under it. */
  modelBase: '/internal/model',
} as const;

/** Called by the platform, not by users or sandboxes: the sweeper's clock (infra/sweeper.ts). */
export const OPS_ROUTES = {
  sweep: '/ops/sweep',
} as const;

/** The names of a route's `:name` parameters and of its `*name` rest, if it has one. */
export type RouteParams<T extends string> = T extends `${string}:${infer Name}/${infer Rest}`
  ? Name | RouteParams<`/${Rest}`>
  : T extends `${string}:${infer Name}`
    ? Name
    : T extends `${string}*${infer Name}`
      ? Name
      : never;

/** A route with its parameters filled in, each escaped as one path segment; a `*name` rest keeps its slashes. */
export function fillPath<T extends string>(route: T, params: Record<RouteParams<T>, string>): string {
  const values: Record<string, string> = params;
  return route
    .replace(/:(\w+)/g, (_, name: string) => encodeURIComponent(values[name] ?? ''))
    .replace(/\*(\w+)$/, (_, name: string) => (values[name] ?? '').split('/').map(encodeURIComponent).join('/'));
}
