import { randomUUID } from 'node:crypto';
import { prompt, type ApiAnswer, type RunningService } from './service.js';

/**
 * Runs a script as the agent's Bash tool would, inside the sandbox: the attacker's position.
 * The script travels base64-encoded, so that no quoting of the prompt can change it; what it
 * prints comes back in the answer as "tool output: ...".
 */
export async function runInSandbox(
  service: Pick<RunningService, 'url'>,
  script: string,
  options: { userId?: string; language?: 'node' | 'sh'; conversationId?: string; headers?: Record<string, string> } = {},
): Promise<ApiAnswer> {
  const encoded = Buffer.from(script, 'utf8').toString('base64');
  const file = `/tmp/attack-${randomUUID()}`;
  const run = options.language === 'sh' ? `sh ${file}` : `node ${file}`;
  return prompt(
    service,
    options.userId ?? `attacker-${randomUUID()}`,
    { message: `bash: echo ${encoded} | base64 -d > ${file} && ${run}`, ...(options.conversationId ? { conversationId: options.conversationId } : {}) },
    options.headers,
  );
}

/** What the tool printed, from a turn that succeeded. */
export function toolOutput(answer: ApiAnswer): string {
  if (answer.status !== 200) throw new Error(`the turn did not succeed: ${answer.status} ${JSON.stringify(answer.body)}`);
  const text = String(answer.body.text);
  if (!text.startsWith('tool output:')) throw new Error(`not a tool's output: ${text}`);
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
