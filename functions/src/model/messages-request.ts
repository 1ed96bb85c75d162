import { z } from 'zod';

/**
 * The parts of a Messages API request that clauderun reads: the demo model answers the last
 * user message, and tests inspect the conversation the agent sent. Unknown fields pass through.
 */

const ContentBlock = z.looseObject({ type: z.string() });
const Message = z.looseObject({ role: z.string(), content: z.union([z.string(), z.array(ContentBlock)]) });
export const MessagesRequest = z.looseObject({
  model: z.string(),
  messages: z.array(Message),
  stream: z.boolean().optional(),
});
export type MessagesRequest = z.infer<typeof MessagesRequest>;
type Content = MessagesRequest['messages'][number]['content'];

/**
 * Text of a message's content: strings and text blocks, plus tool results (their text). The
 * agent's own <system-reminder> blocks are left out: they are not what the user said.
 */
export function contentText(content: Content): string {
  if (typeof content === 'string') return content;
  return content
    .map((block) => {
      if (block.type === 'text' && typeof block.text === 'string') {
        return block.text.trimStart().startsWith('<system-reminder>') ? '' : block.text;
      }
      if (block.type === 'tool_result') {
        const inner = block.content;
        if (typeof inner === 'string') return inner;
        if (Array.isArray(inner)) return contentText(inner as Content);
      }
      return '';
    })
    .filter((t) => t !== '')
    .join('\n');
}

/** The last message with role "user" (newer CLIs append system entries after it). */
export function lastUserMessage(request: MessagesRequest): MessagesRequest['messages'][number] | undefined {
  return request.messages.findLast((m) => m.role === 'user');
}

/** Whether the last user message carries tool results, i.e. the agent is reporting a tool's output. */
export function isToolResultTurn(request: MessagesRequest): boolean {
  const last = lastUserMessage(request);
  return last !== undefined && Array.isArray(last.content) && last.content.some((b) => b.type === 'tool_result');
}
