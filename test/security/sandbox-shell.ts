import { randomUUID } from 'node:crypto';
import { expect } from 'vitest';
import { call, prompt, type ApiAnswer, type RunningService } from '../support/service.js';

/** What a turn ended as, whether the API answered 200 or an error carrying the turn. */
export interface TurnOutcome {
  status: string;
  reason: string | null;
  text: string | null;
  conversationId: string;
  turnId: string;
}

export function turnOf(answer: ApiAnswer): TurnOutcome {
  const error = answer.body.error as { details?: Record<string, unknown> } | undefined;
  const turn = (answer.status === 200 ? answer.body : error?.details) ?? {};
  return {
    status: String(turn.status),
    reason: typeof turn.reason === 'string' ? turn.reason : null,
    text: typeof turn.text === 'string' ? turn.text : null,
    conversationId: String(turn.conversationId),
    turnId: String(turn.turnId),
  };
}

/**
 * Runs one shell command as the agent's Bash tool (the fake model turns `bash: <command>` into a
 * tool call) and returns the API's answer, whatever it is.
 */
export function runInSandbox(
  service: RunningService,
  command: string,
  options: { userId?: string; conversationId?: string } = {},
): Promise<ApiAnswer> {
  const body = { message: `bash: ${command}`, ...(options.conversationId !== undefined ? { conversationId: options.conversationId } : {}) };
  return prompt(service, options.userId ?? `security-${randomUUID()}`, body);
}

/** Runs a command that must leave the turn answering; returns what the tool printed. */
export async function toolOutput(service: RunningService, command: string, options: { userId?: string; conversationId?: string } = {}): Promise<string> {
  const answer = await runInSandbox(service, command, options);
  expect(answer.status, JSON.stringify(answer.body)).toBe(200);
  const text = String(answer.body.text);
  expect(text.startsWith('tool output:'), text).toBe(true);
  return text;
}

/** Starts a turn without waiting for it; the caller polls it with `turnStatus`. */
export async function startInSandbox(service: RunningService, command: string, userId = `security-${randomUUID()}`) {
  const answer = await prompt(service, userId, { message: `bash: ${command}` }, { prefer: 'respond-async' });
  expect(answer.status, JSON.stringify(answer.body)).toBe(202);
  return { userId, conversationId: String(answer.body.conversationId), turnId: String(answer.body.turnId) };
}

export async function turnStatus(service: RunningService, started: { userId: string; conversationId: string; turnId: string }): Promise<string> {
  const answer = await call(service, 'GET', `/api/conversations/${started.conversationId}/turns/${started.turnId}`, { userId: started.userId });
  return String(answer.body.status);
}

export const FINAL_STATES = ['succeeded', 'failed', 'cancelled', 'timed_out'];
