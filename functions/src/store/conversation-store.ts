import type { TurnStatus, Usage } from '../contract/turn.js';

export interface Conversation {
  id: string;
  userId: string;
  createdAt: string;
  updatedAt: string;
  /** The agent session the next turn resumes; set when a turn succeeds. */
  sessionId: string | null;
  /** BlobStore key of the latest committed state archive (agent session + workspace). */
  stateKey: string | null;
}

export interface Turn {
  id: string;
  conversationId: string;
  userId: string;
  prompt: string;
  status: TurnStatus;
  /** Why a turn ended the way it did, in words; null while running and on success. */
  reason: string | null;
  text: string | null;
  usage: Usage;
  costUsd: number;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  deadlineAt: string;
  /** BlobStore key of the state archive the runner uploaded during this turn, if any. */
  uploadedStateKey: string | null;
}

export type TurnPatch = Partial<
  Pick<Turn, 'status' | 'reason' | 'text' | 'startedAt' | 'finishedAt' | 'uploadedStateKey'>
>;

export type StartTurnResult = { started: true } | { started: false; activeTurnId: string };

/**
 * Where conversations and turns live. Every method is atomic on its own; `updateTurn` is a
 * compare-and-set so that a duplicate or late writer can never overwrite a final turn.
 */
export interface ConversationStore {
  createConversation(conversation: Conversation): Promise<void>;
  getConversation(id: string): Promise<Conversation | undefined>;
  /** Inserts the turn unless another turn of the conversation is still unfinished. */
  startTurn(turn: Turn): Promise<StartTurnResult>;
  getTurn(id: string): Promise<Turn | undefined>;
  /** Applies the patch only if the turn's status is one of `from`; returns the new turn or undefined. */
  updateTurn(id: string, from: readonly TurnStatus[], patch: TurnPatch): Promise<Turn | undefined>;
  /** Adds metered usage to a turn (atomic increment). */
  addUsage(id: string, usage: Usage, costUsd: number): Promise<void>;
  /** Points the conversation at a new agent session and state; returns the state key it replaced. */
  commitState(conversationId: string, sessionId: string, stateKey: string): Promise<string | null>;
  /** Turns not yet in a final state (for settling what a previous process left behind). */
  listUnfinishedTurns(): Promise<Turn[]>;
  close(): Promise<void>;
}
