import { emptyUsage, type Usage } from '../contract/turn.js';

/**
 * Reads token usage out of a Messages API answer as it streams past, without holding it:
 * message_start carries input and cache tokens, message_delta the cumulative output tokens.
 */
export class UsageMeter {
  private usage: Usage = emptyUsage();
  private model: string | undefined;
  private pending = '';
  private outputOfCurrentMessage = 0;
  /** Whether the answer's final usage was read (message_delta, or a whole body's usage). */
  private usageRead = false;

  /** Feeds a chunk of an SSE stream. */
  pushSse(chunk: string): void {
    this.pending += chunk;
    let newline: number;
    while ((newline = this.pending.indexOf('\n')) >= 0) {
      const line = this.pending.slice(0, newline).trimEnd();
      this.pending = this.pending.slice(newline + 1);
      if (line.startsWith('data:')) this.readEvent(line.slice(5).trim());
    }
  }

  /** Reads a whole non-streaming Messages API response body. */
  pushJson(body: string): void {
    const message = safeJson(body);
    if (!isRecord(message)) return;
    this.startMessage(message);
    const usage = message.usage;
    if (isRecord(usage)) {
      this.usage.outputTokens += num(usage.output_tokens);
      this.usageRead = true;
    }
  }

  /**
   * For an answer whose final usage never came (cut short upstream, or too large to read): the
   * call is counted as the most it could have cost, never as free.
   */
  assumeWorstUnlessRead(worst: { inputTokens: number; outputTokens: number }): void {
    if (this.usageRead) return;
    this.usage.modelCalls = Math.max(1, this.usage.modelCalls);
    this.usage.inputTokens = Math.max(this.usage.inputTokens, worst.inputTokens);
    this.usage.outputTokens = Math.max(this.usage.outputTokens, worst.outputTokens);
  }

  result(): { usage: Usage; model: string | undefined } {
    return { usage: { ...this.usage }, model: this.model };
  }

  private readEvent(data: string): void {
    const event = safeJson(data);
    if (!isRecord(event)) return;
    if (event.type === 'message_start' && isRecord(event.message)) {
      this.startMessage(event.message);
    } else if (event.type === 'message_delta' && isRecord(event.usage)) {
      // output_tokens in message_delta is cumulative for the message.
      const output = num(event.usage.output_tokens);
      this.usage.outputTokens += Math.max(0, output - this.outputOfCurrentMessage);
      this.outputOfCurrentMessage = Math.max(output, this.outputOfCurrentMessage);
      this.usageRead = true;
    }
  }

  private startMessage(message: Record<string, unknown>): void {
    this.usage.modelCalls += 1;
    this.outputOfCurrentMessage = 0;
    if (typeof message.model === 'string') this.model = message.model;
    const usage = message.usage;
    if (!isRecord(usage)) return;
    this.usage.inputTokens += num(usage.input_tokens);
    this.usage.cacheCreationInputTokens += num(usage.cache_creation_input_tokens);
    this.usage.cacheReadInputTokens += num(usage.cache_read_input_tokens);
  }
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? Math.floor(v) : 0);
function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
