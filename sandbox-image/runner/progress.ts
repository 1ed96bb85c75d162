import type { AgentEvent } from '../../functions/src/contract/runner.js';
import { cutToLimit, headOf, RUNNER_LIMITS } from '../../functions/src/contract/runner-limits.js';

/**
 * The text a line of partial output (`--include-partial-messages`) adds to the answer the main
 * agent is writing, if it adds any: a subagent's text (parent_tool_use_id set) and thinking are
 * not the answer.
 */
export function textDelta(line: Record<string, unknown>): string | undefined {
  if (line.type !== 'stream_event' || (line.parent_tool_use_id !== null && line.parent_tool_use_id !== undefined)) return undefined;
  const event = line.event as { type?: unknown; delta?: { type?: unknown; text?: unknown } } | undefined;
  if (event?.type !== 'content_block_delta' || event.delta?.type !== 'text_delta') return undefined;
  const text = event.delta.text;
  return typeof text === 'string' && text !== '' ? text : undefined;
}

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
 * How text deltas are batched: the first of a block soon after it comes (what a user waits for),
 * the rest at most every `everyMs`, which the API gives with the turn (RunnerTurn.textDeltaEveryMs:
 * each post writes the turn's record, and its store may limit how often).
 */
export const DELTA_BATCHING = { firstMs: 25, everyMs: 500 } as const;

/**
 * Sends progress in order, batching whatever piles up while a post is in flight, and text
 * deltas by time. Progress is best-effort: a failed post is reported on stderr and never fails the turn.
 */
export class ProgressReporter {
  private queue: AgentEvent[] = [];
  private inFlight: Promise<void> = Promise.resolve();
  private pendingDelta = '';
  private deltaTimer: NodeJS.Timeout | undefined;
  /** Whether deltas of the current text block were sent already (the later ones wait longer). */
  private blockStarted = false;

  constructor(
    private readonly send: (events: AgentEvent[]) => Promise<void>,
    private readonly batching: { firstMs: number; everyMs: number } = DELTA_BATCHING,
  ) {}

  /**
   * Steps go out after the deltas before them; a step ends the text block its deltas built. A
   * block's `text` holds all of it, so deltas of it not yet sent are dropped rather than sent
   * just before it: a post less on the way to the turn's end.
   */
  push(events: AgentEvent[]): void {
    if (events.length === 0) return;
    if (events[0]?.type === 'text') this.dropDelta();
    else this.sendDelta();
    this.blockStarted = false;
    this.enqueue(events);
  }

  private dropDelta(): void {
    clearTimeout(this.deltaTimer);
    this.deltaTimer = undefined;
    this.pendingDelta = '';
  }

  pushDelta(text: string): void {
    this.pendingDelta += text;
    this.deltaTimer ??= setTimeout(() => this.sendDelta(), this.blockStarted ? this.batching.everyMs : this.batching.firstMs);
  }

  flush(): Promise<void> {
    this.sendDelta();
    return this.inFlight;
  }

  private sendDelta(): void {
    clearTimeout(this.deltaTimer);
    this.deltaTimer = undefined;
    if (this.pendingDelta === '') return;
    const events: AgentEvent[] = [];
    for (let rest = this.pendingDelta; rest !== ''; ) {
      const piece = headOf(rest, RUNNER_LIMITS.eventTextChars);
      events.push({ type: 'text_delta', text: piece });
      rest = rest.slice(piece.length);
    }
    this.pendingDelta = '';
    this.blockStarted = true;
    this.enqueue(events);
  }

  private enqueue(events: AgentEvent[]): void {
    this.queue.push(...events);
    this.inFlight = this.inFlight.then(() => this.drain());
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
