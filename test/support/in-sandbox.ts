import { randomUUID } from 'node:crypto';
import { expect } from 'vitest';
import { call, prompt, type ApiAnswer, type RunningService } from './service.js';

/**
 * Runs a script as the agent's Bash tool would, inside the sandbox: the attacker's position.
 * The script travels base64-encoded, so that no quoting of the prompt can change it; what it
 * prints comes back in the answer as "tool output: ...".
 */
export function runScript(
  service: Pick<RunningService, 'url'>,
  script: string,
  options: { userId?: string; language?: 'node' | 'sh'; conversationId?: string } = {},
): Promise<ApiAnswer> {
  const encoded = Buffer.from(script, 'utf8').toString('base64');
  const file = `/tmp/attack-${randomUUID()}`;
  const run = options.language === 'sh' ? `sh ${file}` : `node ${file}`;
  return runCommand(service, `echo ${encoded} | base64 -d > ${file} && ${run}`, options);
}

/** What the tool printed, from a turn that succeeded. */
export function outputOf(answer: ApiAnswer): string {
  expect(answer.status, JSON.stringify(answer.body)).toBe(200);
  const text = String(answer.body.text);
  expect(text.startsWith('tool output:'), text).toBe(true);
  return text;
}

/**
 * In-sandbox JavaScript: `call(method, path, {headers, body})` against the API as the sandbox
 * reaches it (API_URL is not in the tool's environment; the bridge's loopback port is 8080), and
 * the turn token, which the agent holds as its model key.
 */
export const SANDBOX_PRELUDE = `
const http = require('node:http');
const token = process.env.ANTHROPIC_API_KEY;
const turnId = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()).turnId;
function call(method, path, { headers = {}, body } = {}) {
  return new Promise((resolve) => {
    const data = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const req = http.request({ host: '127.0.0.1', port: 8080, method, path, headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode, text }));
    });
    req.on('error', (e) => resolve({ status: 0, text: e.message }));
    req.end(data);
  });
}
`;

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
export function runCommand(
  service: Pick<RunningService, 'url'>,
  command: string,
  options: { userId?: string; conversationId?: string } = {},
): Promise<ApiAnswer> {
  const body = { message: `bash: ${command}`, ...(options.conversationId !== undefined ? { conversationId: options.conversationId } : {}) };
  return prompt(service, options.userId ?? `security-${randomUUID()}`, body);
}

/** Runs a command that must leave the turn answering; returns what the tool printed. */
export async function commandOutput(
  service: RunningService,
  command: string,
  options: { userId?: string; conversationId?: string } = {},
): Promise<string> {
  return outputOf(await runCommand(service, command, options));
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
