import type { StartedTurnView, TurnLinks } from './api.js';
import { relativeLink } from './relative-link.js';
import { fillPath, PUBLIC_ROUTES } from './routes.js';
import type { TurnStatus } from './turn.js';

/**
 * A started turn's links, relative to the path of the request they answer (README "Links"): they
 * stay right when the API is served under a path it never sees. Imports nothing that needs zod:
 * the web page makes the same links for a turn it finds running as the API gives for one it starts.
 */
export function turnLinks(ids: { conversationId: string; turnId: string }, requestPath: string): TurnLinks {
  const link = (target: string) => relativeLink(requestPath, target);
  return {
    turn: link(fillPath(PUBLIC_ROUTES.turn, ids)),
    events: link(fillPath(PUBLIC_ROUTES.turnEvents, ids)),
    cancel: link(fillPath(PUBLIC_ROUTES.turnCancel, ids)),
    conversation: link(fillPath(PUBLIC_ROUTES.conversation, ids)),
  };
}

/** The 202 answer to a started turn, asked for at `requestPath`; its `Location` is `links.turn`. */
export function startedTurnView(turn: { conversationId: string; turnId: string; status: TurnStatus }, requestPath: string): StartedTurnView {
  return { conversationId: turn.conversationId, turnId: turn.turnId, status: turn.status, links: turnLinks(turn, requestPath) };
}

/** The links as absolute URLs: resolved against the URL of the request they answer (RFC 3986 section 5). */
export function resolveTurnLinks(links: TurnLinks, requestUrl: string): TurnLinks {
  const at = (link: string) => new URL(link, requestUrl).href;
  return { turn: at(links.turn), events: at(links.events), cancel: at(links.cancel), conversation: at(links.conversation) };
}
