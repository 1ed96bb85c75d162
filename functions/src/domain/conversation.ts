import { z } from 'zod';
import { AgentOptions } from '../contract/api.js';

export const ConversationRecord = z.object({
  id: z.string(),
  userId: z.string(),
  /** The start of the first message, to tell conversations apart in a list. */
  title: z.string(),
  createdAt: z.string(),
  updatedAt: z.string(),
  /** The agent session the next turn resumes; set when a turn succeeds. */
  sessionId: z.string().nullable(),
  /** BlobStore key of the latest committed state archive (agent session + workspace). */
  stateKey: z.string().nullable(),
  /** How the agent runs its turns (each turn may override them); a record written before options existed has none. */
  options: AgentOptions.default({}),
});
export type Conversation = z.infer<typeof ConversationRecord>;
/** What a conversation is made with; options may be left out. */
export type NewConversation = z.input<typeof ConversationRecord>;

/** A conversation's new agent session and state archive, taken on together with a turn's success. */
export const StateCommit = z.object({ sessionId: z.string(), stateKey: z.string() });
export type StateCommit = z.infer<typeof StateCommit>;

/** Where a page of a list of conversations starts: after this (updatedAt, id). */
export const ListCursor = z.object({ updatedAt: z.string(), id: z.string() });
export type ListCursor = z.infer<typeof ListCursor>;

/** The title of a conversation created empty without one, until its first prompt names it. */
export const UNTITLED = 'New conversation';

/** A conversation's title: the start of its first message, on one line. */
export function titleOf(message: string): string {
  const line = message.trim().replace(/\s+/g, ' ');
  return line.length <= 80 ? line : `${line.slice(0, 79)}…`;
}
