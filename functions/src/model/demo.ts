import { randomUUID } from 'node:crypto';
import { messageResponse, type AssistantBlock } from './messages-sse.js';
import { contentText, isToolResultTurn, lastUserMessage, MessagesRequest } from './messages-request.js';
import type { ModelUpstream, UpstreamRequest } from './upstream.js';

export const DEMO_LABEL = '[clauderun demo model]';
const RUN_PREFIX = /^\s*run:\s*([\s\S]+)$/i;

/**
 * A built-in, offline stand-in for the Messages API, used when no ANTHROPIC_API_KEY is set so
 * that a newcomer sees the whole path work. Every answer says where it comes from. A prompt of
 * the form "run: <command>" makes it call the Bash tool, to show the sandbox at work.
 */
export class DemoUpstream implements ModelUpstream {
  readonly name = 'demo';
  /** The demo model costs nothing. */
  readonly priceFactor = 0;

  async send(request: UpstreamRequest): Promise<Response> {
    const parsed = MessagesRequest.safeParse(JSON.parse(request.body.toString('utf8') || 'null'));
    if (!parsed.success) {
      return Response.json({ type: 'error', error: { type: 'invalid_request_error', message: 'not a Messages API request' } }, { status: 400 });
    }
    return messageResponse(parsed.data, answer(parsed.data));
  }
}

function answer(request: MessagesRequest): AssistantBlock[] {
  const last = lastUserMessage(request);
  const said = last === undefined ? '' : contentText(last.content).trim();
  if (isToolResultTurn(request)) {
    return [{ type: 'text', text: `${DEMO_LABEL} The command ran in your sandbox. Its output:\n\n${said.slice(0, 4000)}` }];
  }
  const run = RUN_PREFIX.exec(said);
  if (run?.[1] !== undefined) {
    return [
      {
        type: 'tool_use',
        id: `toolu_demo_${randomUUID()}`,
        name: 'Bash',
        input: { command: run[1].trim(), description: 'Run the requested command' },
      },
    ];
  }
  return [
    {
      type: 'text',
      text:
        `${DEMO_LABEL} This answer comes from clauderun's built-in demo model, not from Claude: ` +
        `no ANTHROPIC_API_KEY is set. Your message reached a real Claude Code agent in an isolated sandbox. ` +
        `Try "run: ls -la" to see the agent use a tool. You said: ${said.slice(0, 500)}`,
    },
  ];
}
