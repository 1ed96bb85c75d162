import type { ConversationSummary, TurnView } from '../contract/api.js';
import type { TurnEventView } from '../contract/events.js';
import type { Conversation } from '../domain/conversation.js';
import type { TurnEvent } from '../domain/turn-event.js';
import type { Turn } from '../domain/turn.js';

/** What clients see of the stored records: one function per shape, shared by every route. */

export function turnView(turn: Turn): TurnView {
  return {
    conversationId: turn.conversationId,
    turnId: turn.id,
    status: turn.status,
    text: turn.text,
    reason: turn.reason,
    usage: turn.usage,
    costUsd: turn.costUsd,
    durationMs: turn.finishedAt === null ? null : Date.parse(turn.finishedAt) - Date.parse(turn.createdAt),
    createdAt: turn.createdAt,
    finishedAt: turn.finishedAt,
    stoppedBy: turn.stoppedBy,
    egress: { connections: turn.egressConnections, bytes: turn.egressBytes },
  };
}

export function conversationSummary(conversation: Conversation): ConversationSummary {
  return {
    conversationId: conversation.id,
    title: conversation.title,
    createdAt: conversation.createdAt,
    updatedAt: conversation.updatedAt,
  };
}

export function eventView({ turnId: _turnId, ...view }: TurnEvent): TurnEventView {
  return view;
}
