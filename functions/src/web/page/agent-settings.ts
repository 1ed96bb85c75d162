import type { AgentOptions, ClientConfig } from '../../contract/api.js';
import { byId, el } from './dom.js';

/** The longest instructions the API takes (AgentOptions.systemPrompt), in bytes. */
const MAX_INSTRUCTIONS_BYTES = 10 * 1024;

/** What the options of a conversation say, in one line: its model, and the start of its instructions. */
export function optionsLine(options: AgentOptions, defaultModel: string): string {
  const parts = [`Model: ${options.model ?? `${defaultModel} (default)`}`];
  if (options.systemPrompt !== undefined && options.systemPrompt !== '') {
    const line = options.systemPrompt.trim().replace(/\s+/g, ' ');
    parts.push(`Instructions: ${line.length <= 120 ? line : `${line.slice(0, 119)}…`}`);
  }
  if (options.allowedTools !== undefined) parts.push(`Tools: ${options.allowedTools.join(', ') || 'none'}`);
  if (options.disallowedTools !== undefined && options.disallowedTools.length > 0) parts.push(`Not: ${options.disallowedTools.join(', ')}`);
  if (options.maxTurns !== undefined) parts.push(`At most ${options.maxTurns} turns`);
  return parts.join(' · ');
}

/**
 * How a new conversation's agent is set up (a model the deployment offers, and instructions),
 * and, on an open conversation, what it was set up with.
 */
export class AgentSettings {
  private readonly panel = byId('agent-settings', HTMLDetailsElement);
  private readonly model = byId('agent-model', HTMLSelectElement);
  private readonly instructions = byId('agent-instructions', HTMLTextAreaElement);
  private readonly shown = byId('conversation-options', HTMLParagraphElement);

  constructor(private readonly config: Pick<ClientConfig, 'models' | 'defaultModel'>) {
    this.model.replaceChildren(
      ...config.models.map((name) => el('option', { text: name === config.defaultModel ? `${name} (default)` : name, attrs: { value: name } })),
    );
    this.model.value = config.defaultModel;
  }

  /** A new conversation: the choice is offered, set back to the defaults. */
  offer(): void {
    this.panel.hidden = false;
    this.model.value = this.config.defaultModel;
    this.instructions.value = '';
    this.shown.hidden = true;
  }

  /** An open conversation: what it runs with is shown, and nothing is offered. */
  show(options: AgentOptions): void {
    this.panel.hidden = true;
    this.panel.open = false;
    this.shown.textContent = optionsLine(options, this.config.defaultModel);
    this.shown.hidden = false;
  }

  /** The options chosen for a new conversation; undefined (with the field marked) when the instructions are too long. */
  chosen(): AgentOptions | undefined {
    const systemPrompt = this.instructions.value.trim();
    if (new TextEncoder().encode(systemPrompt).length > MAX_INSTRUCTIONS_BYTES) {
      this.panel.open = true;
      this.instructions.setCustomValidity(`Instructions may be at most ${MAX_INSTRUCTIONS_BYTES / 1024} KB.`);
      this.instructions.reportValidity();
      return undefined;
    }
    this.instructions.setCustomValidity('');
    return { model: this.model.value, ...(systemPrompt === '' ? {} : { systemPrompt }) };
  }
}
