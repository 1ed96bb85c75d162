import type { ConversationSummary, TurnEventView, TurnView } from '../contract/api.js';
import type { Conversation, Turn, TurnEvent } from '../store/conversation-store.js';

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

export function eventView(event: TurnEvent): TurnEventView {
  return { seq: event.seq, type: event.type, data: event.data, at: event.at };
}

/** A conversation's title: the start of its first message, on one line. */
export function titleOf(message: string): string {
  const line = message.trim().replace(/\s+/g, ' ');
  return line.length <= 80 ? line : `${line.slice(0, 79)}…`;
}
