import type { Conversation } from '../domain/conversation.js';
import type { ConversationStore } from '../store/conversation-store.js';
import { ServiceError } from './errors.js';

/** The user's conversation; another user's is "not found" like one that does not exist: existence is never leaked. */
export async function ownConversation(store: ConversationStore, userId: string, conversationId: string): Promise<Conversation> {
  const conversation = await store.getConversation(conversationId);
  if (conversation === undefined || conversation.userId !== userId) {
    throw new ServiceError('not_found', `conversation ${conversationId} not found`);
  }
  return conversation;
}
