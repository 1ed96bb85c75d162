import type { TurnView } from '../../contract/api.js';
import { TurnEventType } from '../../contract/event-types.js';
import type { ToolResultData, ToolUseData, TurnEventView } from '../../contract/events.js';
import { el } from './dom.js';
import { describeStatus, describeTurnEnd } from './errors.js';
import { doneLine, egressLine, usageLine } from './format.js';
import { RUNNER_LIMITS } from '../../contract/runner-limits.js';
import { renderMarkdown } from './markdown.js';

/** An event of a type this page does not know is left out; one the contract has and `apply` lacks fails to compile. */
const unhandled = (_event: never): undefined => undefined;

/**
 * One turn on screen: the prompt, the agent's steps as they come, its answer as Markdown, how it
 * ended, and what it used. Everything from the model or the agent goes in as text, or through
 * renderMarkdown.
 */
export class TurnCard {
  readonly element: HTMLLIElement;
  private readonly steps: HTMLOListElement;
  private readonly answer: HTMLDivElement;
  private readonly status: HTMLParagraphElement;
  private readonly usage: HTMLParagraphElement;
  /** Every connection out the sandbox tried, compactly. */
  private readonly egress: HTMLUListElement;
  /** The agent's latest text: the answer so far, until a tool step shows it was a step itself. */
  private latestText: string | undefined;
  /** The text block the model is writing, from its deltas, until its `text` event holds it whole. */
  private growingText: string | undefined;
  /** A render of the growing text waits for the next frame: however many deltas come, one render a frame. */
  private renderPending = false;
  private lastTool = 'The tool';

  constructor(prompt: string) {
    this.steps = el('ol', { className: 'steps', attrs: { 'aria-label': 'Steps' } });
    this.answer = el('div', { className: 'answer markdown' });
    this.status = el('p', { className: 'turn-status' });
    this.usage = el('p', { className: 'usage' });
    this.egress = el('ul', { className: 'egress', attrs: { 'aria-label': 'Connections out' } });
    this.steps.hidden = true;
    this.egress.hidden = true;
    this.usage.hidden = true;
    this.element = el(
      'li',
      { className: 'turn' },
      el('div', { className: 'prompt' }, el('span', { className: 'who', text: 'You' }), el('p', { className: 'prompt-text', text: prompt })),
      el(
        'div',
        { className: 'reply' },
        el('span', { className: 'who', text: 'Agent' }),
        this.steps,
        this.answer,
        this.egress,
        this.status,
        this.usage,
      ),
    );
  }

  setStatus(status: TurnView['status']): void {
    this.status.dataset.status = status;
    this.status.textContent = describeStatus(status);
  }

  /** Applies one event of the turn's stream; returns a sentence for the progress line. */
  apply(event: TurnEventView): string | undefined {
    switch (event.type) {
      case TurnEventType.status:
        this.setStatus(event.data.status);
        return describeStatus(event.data.status);
      case TurnEventType.text:
        this.growingText = undefined;
        return this.text(event.data.text);
      case TurnEventType.text_delta:
        return this.textDelta(event.data.text);
      case TurnEventType.tool_use:
        return this.toolUse(event.data);
      case TurnEventType.tool_result:
        return this.toolResult(event.data);
      case TurnEventType.events_dropped:
        return event.data.message;
      case TurnEventType.egress: {
        const attempt = event.data;
        this.egress.hidden = false;
        this.egress.append(el('li', { className: attempt.allowed ? 'egress-allowed' : 'egress-refused', text: egressLine(attempt) }));
        return attempt.allowed ? `Connected to ${attempt.host}:${attempt.port}` : `Refused ${attempt.host}:${attempt.port}`;
      }
      case TurnEventType.result: {
        const turn = event.data;
        this.finish(turn);
        return turn.status === 'succeeded' ? doneLine(turn) : describeTurnEnd(turn);
      }
      default:
        return unhandled(event);
    }
  }

  /** Shows a finished turn (the `result` event, or a stored turn): its answer, how it ended, and its usage. */
  finish(turn: TurnView): void {
    const answer = turn.text ?? this.latestText;
    if (answer !== undefined && answer !== '') renderMarkdown(this.answer, answer);
    this.status.dataset.status = turn.status;
    this.status.textContent = describeTurnEnd(turn);
    this.usage.textContent = usageLine(turn);
    this.usage.hidden = false;
  }

  /**
   * The preview grows to the longest answer kept (RUNNER_LIMITS.resultTextChars) and no further: the
   * whole text comes with the `text` and `result` events, and re-rendering an ever longer text
   * for each of ever more deltas would hold the page up.
   */
  private textDelta(delta: string): string {
    const grown = (this.growingText ?? '') + delta;
    if (grown.length > RUNNER_LIMITS.resultTextChars) return 'The agent is writing…';
    this.growingText = grown;
    if (!this.renderPending) {
      this.renderPending = true;
      requestAnimationFrame(() => {
        this.renderPending = false;
        if (this.growingText !== undefined) this.text(this.growingText);
      });
    }
    return 'The agent is writing…';
  }

  private text(text: string): string {
    this.latestText = text;
    renderMarkdown(this.answer, text);
    return 'The agent is writing…';
  }

  private toolUse(step: ToolUseData): string {
    // Text before a tool call was the agent thinking aloud, not its answer: it becomes a step.
    if (this.latestText !== undefined) {
      const note = el('li', { className: 'step step-text markdown' });
      renderMarkdown(note, this.latestText);
      this.addStep(note);
      this.latestText = undefined;
      this.growingText = undefined;
      this.answer.replaceChildren();
    }
    this.lastTool = step.name;
    this.addStep(
      el(
        'li',
        { className: 'step step-tool' },
        el('span', { className: 'step-name', text: step.name }),
        el('code', { className: 'step-summary', text: step.summary }),
      ),
    );
    return `Running ${step.name}: ${step.summary}`;
  }

  private toolResult(step: ToolResultData): string {
    const label = step.isError ? 'Error' : 'Output';
    this.addStep(
      el(
        'li',
        { className: `step step-result${step.isError ? ' step-error' : ''}` },
        el('span', { className: 'step-name', text: label }),
        el('pre', { className: 'step-summary', text: step.summary }),
      ),
    );
    return step.isError ? `${this.lastTool} reported an error` : `${this.lastTool} finished`;
  }

  private addStep(step: HTMLLIElement): void {
    this.steps.hidden = false;
    this.steps.append(step);
  }
}
