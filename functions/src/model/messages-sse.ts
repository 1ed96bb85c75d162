import { randomUUID } from 'node:crypto';
import type { MessagesRequest } from './messages-request.js';

/**
 * Encodes one assistant message as the Server-Sent Events stream of the Anthropic Messages API
 * (message_start, content blocks, message_delta, message_stop). The demo model and the test
 * fixture both speak through this, so the stream format lives in one place.
 */

export type AssistantBlock = { type: 'text'; text: string } | { type: 'tool_use'; id: string; name: string; input: Record<string, unknown> };

export interface AssistantMessage {
  id: string;
  model: string;
  content: AssistantBlock[];
  inputTokens: number;
  outputTokens: number;
}

const event = (name: string, data: unknown): string => `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;

export function encodeMessageStream(message: AssistantMessage): string[] {
  const stopReason = message.content.some((b) => b.type === 'tool_use') ? 'tool_use' : 'end_turn';
  const events = [
    event('message_start', {
      type: 'message_start',
      message: {
        id: message.id,
        type: 'message',
        role: 'assistant',
        model: message.model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: { input_tokens: message.inputTokens, output_tokens: 1, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 },
      },
    }),
  ];
  message.content.forEach((block, index) => {
    if (block.type === 'text') {
      events.push(event('content_block_start', { type: 'content_block_start', index, content_block: { type: 'text', text: '' } }));
      // A word at a time, as a model streams its tokens.
      for (const word of block.text.match(/\s*\S+\s*|\s+/g) ?? []) {
        events.push(event('content_block_delta', { type: 'content_block_delta', index, delta: { type: 'text_delta', text: word } }));
      }
    } else {
      events.push(
        event('content_block_start', {
          type: 'content_block_start',
          index,
          content_block: { type: 'tool_use', id: block.id, name: block.name, input: {} },
        }),
      );
      events.push(
        event('content_block_delta', {
          type: 'content_block_delta',
          index,
          delta: { type: 'input_json_delta', partial_json: JSON.stringify(block.input) },
        }),
      );
    }
    events.push(event('content_block_stop', { type: 'content_block_stop', index }));
  });
  events.push(
    event('message_delta', {
      type: 'message_delta',
      delta: { stop_reason: stopReason, stop_sequence: null },
      usage: { output_tokens: message.outputTokens },
    }),
  );
  events.push(event('message_stop', { type: 'message_stop' }));
  return events;
}

/** The same message as a non-streaming Messages API response body. */
export function encodeMessageJson(message: AssistantMessage): unknown {
  return {
    id: message.id,
    type: 'message',
    role: 'assistant',
    model: message.model,
    content: message.content,
    stop_reason: message.content.some((b) => b.type === 'tool_use') ? 'tool_use' : 'end_turn',
    stop_sequence: null,
    usage: { input_tokens: message.inputTokens, output_tokens: message.outputTokens },
  };
}

/** A rough token count (4 characters a token) for stand-ins that must report some usage. */
export const roughTokens = (text: string): number => Math.max(1, Math.ceil(text.length / 4));

/** A stand-in model's answer to `request`: streamed or whole, as the request asked. */
export function messageResponse(request: MessagesRequest, content: AssistantBlock[]): Response {
  const message: AssistantMessage = {
    id: `msg_${randomUUID().replaceAll('-', '')}`,
    model: request.model,
    content,
    inputTokens: roughTokens(JSON.stringify(request.messages)),
    outputTokens: roughTokens(JSON.stringify(content)),
  };
  if (request.stream !== true) return Response.json(encodeMessageJson(message));
  return new Response(encodeMessageStream(message).join(''), { headers: { 'content-type': 'text/event-stream' } });
}
