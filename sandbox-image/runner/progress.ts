import type { AgentEvent } from '../../functions/src/contract/runner.js';
import { cutToLimit, RUNNER_LIMITS } from '../../functions/src/contract/runner-limits.js';

/** Turns one line of the CLI's stream-json output into the progress events clients watch. */
export function progressEvents(line: Record<string, unknown>): AgentEvent[] {
  const message = line.message as { content?: unknown } | undefined;
  if ((line.type !== 'assistant' && line.type !== 'user') || !Array.isArray(message?.content)) return [];
  const events: AgentEvent[] = [];
  for (const block of message.content as Array<Record<string, unknown>>) {
    if (line.type === 'assistant' && block.type === 'text' && typeof block.text === 'string' && block.text.trim() !== '') {
      events.push({ type: 'text', text: block.text.slice(0, RUNNER_LIMITS.eventTextChars) });
    } else if (line.type === 'assistant' && block.type === 'tool_use') {
      events.push({ type: 'tool_use', name: String(block.name).slice(0, RUNNER_LIMITS.toolNameChars), summary: summarizeInput(block.input) });
    } else if (line.type === 'user' && block.type === 'tool_result') {
      events.push({ type: 'tool_result', summary: short(textOf(block.content)), isError: block.is_error === true });
    }
  }
  return events;
}

/** The one input field that says what a tool call does: a command, a path, a pattern, a URL. */
function summarizeInput(input: unknown): string {
  if (typeof input !== 'object' || input === null) return '';
  const fields = input as Record<string, unknown>;
  for (const key of ['command', 'file_path', 'path', 'pattern', 'url', 'query', 'description', 'prompt']) {
    if (typeof fields[key] === 'string') return short(fields[key]);
  }
  return short(JSON.stringify(fields));
}

function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.map((c) => (typeof c?.text === 'string' ? c.text : '')).join('\n');
  return '';
}

const short = (text: string): string => cutToLimit(text, RUNNER_LIMITS.summaryChars);

/**
 * Sends progress in order, batching whatever piles up while a post is in flight. Progress is
 * best-effort: a failed post is reported on stderr and never fails the turn.
 */
export class ProgressReporter {
  private queue: AgentEvent[] = [];
  private inFlight: Promise<void> = Promise.resolve();

  constructor(private readonly send: (events: AgentEvent[]) => Promise<void>) {}

  push(events: AgentEvent[]): void {
    if (events.length === 0) return;
    this.queue.push(...events);
    this.inFlight = this.inFlight.then(() => this.drain());
  }

  flush(): Promise<void> {
    return this.inFlight;
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, RUNNER_LIMITS.eventsPerBatch);
      try {
        await this.send(batch);
      } catch (error) {
        console.error(`runner: progress not delivered: ${(error as Error).message}`);
      }
    }
  }
}
