import { TurnEventType } from '../../contract/event-types.js';
import type { TurnEventView } from '../../contract/events.js';
import type { AgentSettings } from './agent-settings.js';
import { ApiError, turnLinks, type ApiClient, type StartedTurn } from './api.js';
import { conversationHref, type ConversationList } from './conversation-list.js';
import { confirmAction } from './confirm.js';
import { byId } from './dom.js';
import type { Notice } from './notice.js';
import { followEvents, type ServerEvent } from './sse.js';
import { TurnCard } from './turn-card.js';

interface Running {
  cancelLink: string;
  stop: AbortController;
}

function eventView(event: ServerEvent): TurnEventView | undefined {
  try {
    // The API's own stream (http/turn-events-stream.ts): each data line is an event view.
    return JSON.parse(event.data) as TurnEventView;
  } catch {
    return undefined;
  }
}

/** On a touch screen the on-screen keyboard has no Shift+Enter: there Enter is a new line, and the button sends. */
const enterSends = () => !window.matchMedia('(pointer: coarse)').matches;

/** The newest turn sits just above the composer, which stays at the bottom of the window. */
function scrollToEnd(): void {
  window.scrollTo({ top: document.documentElement.scrollHeight });
}

/** Which conversation a location hash names: `#/c/<id>`; anything else is a new conversation. */
export function conversationOf(hash: string): string | undefined {
  const match = /^#\/c\/([^/]+)$/.exec(hash);
  if (match?.[1] === undefined) return undefined;
  try {
    return decodeURIComponent(match[1]);
  } catch {
    return undefined;
  }
}

/** The open conversation: its turns, the composer, and the turn running in it (at most one). */
export class Chat {
  private readonly title = byId('conversation-title', HTMLHeadingElement);
  private readonly turns = byId('turns', HTMLOListElement);
  private readonly progress = byId('progress', HTMLParagraphElement);
  private readonly form = byId('composer', HTMLFormElement);
  private readonly input = byId('composer-input', HTMLTextAreaElement);
  private readonly sendButton = byId('send', HTMLButtonElement);
  private readonly cancelButton = byId('cancel', HTMLButtonElement);
  private readonly deleteButton = byId('delete-conversation', HTMLButtonElement);
  private conversationId: string | undefined;
  private running: Running | undefined;
  private sending = false;
  /** Counts what the pane showed, so an answer for a conversation left meanwhile is dropped. */
  private view = 0;

  constructor(
    private readonly api: ApiClient,
    private readonly list: ConversationList,
    private readonly notice: Notice,
    private readonly settings: AgentSettings,
    private readonly onError: (error: unknown) => void,
    /** Called when a turn the pane followed has ended. */
    private readonly onTurnEnded: () => void,
    /** Called with the conversation the pane shows now (undefined: a new one), whenever that changes. */
    private readonly onShown: (conversationId: string | undefined) => void,
  ) {
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      void this.send();
    });
    if (enterSends()) {
      this.input.addEventListener('keydown', (event) => {
        // Enter sends, Shift+Enter is a new line; an input method composing text keeps its Enter.
        if (event.key !== 'Enter' || event.shiftKey || event.isComposing) return;
        event.preventDefault();
        this.form.requestSubmit();
      });
    } else {
      byId('composer-hint', HTMLParagraphElement).textContent = 'Enter starts a new line; the Send button sends.';
    }
    this.cancelButton.addEventListener('click', () => void this.cancel());
    this.deleteButton.addEventListener('click', () => void this.deleteOpen());
  }

  /** Shows the conversation the location hash names, or a new one. */
  async route(hash: string): Promise<void> {
    await this.open(conversationOf(hash));
  }

  async open(conversationId: string | undefined): Promise<void> {
    const view = this.reset();
    this.conversationId = conversationId;
    this.list.select(conversationId);
    this.updateComposer();
    this.onShown(conversationId);
    if (conversationId === undefined) {
      this.settings.offer();
      this.input.focus();
      return;
    }
    this.title.textContent = 'Loading…';
    try {
      const conversation = await this.api.conversation(conversationId);
      if (view !== this.view) return;
      this.title.textContent = conversation.title;
      this.settings.show(conversation.options);
      this.deleteButton.hidden = false;
      for (const turn of conversation.turns) {
        const card = new TurnCard(turn.prompt);
        this.turns.append(card.element);
        if (turn.finishedAt !== null) {
          card.finish(turn);
        } else {
          card.setStatus(turn.status);
          void this.follow(card, turnLinks(conversationId, turn.turnId));
        }
      }
      this.title.focus();
    } catch (error) {
      if (view !== this.view) return;
      this.onError(error);
      // Nothing to show: carry on with a new conversation rather than one that cannot be reached.
      history.replaceState(null, '', '#/new');
      this.conversationId = undefined;
      this.title.textContent = 'New conversation';
      this.settings.offer();
      this.list.select(undefined);
      this.onShown(undefined);
    }
  }

  /** Empties the pane (sign-out): stops following, forgets the conversation and the draft. */
  close(): void {
    this.reset();
    this.conversationId = undefined;
    this.input.value = '';
    this.updateComposer();
    this.onShown(undefined);
  }

  private reset(): number {
    this.running?.stop.abort();
    this.running = undefined;
    this.turns.replaceChildren();
    this.title.textContent = 'New conversation';
    this.deleteButton.hidden = true;
    this.setProgress('');
    return ++this.view;
  }

  private async send(): Promise<void> {
    const message = this.input.value;
    if (message.trim() === '' || this.sending) return;
    if (this.running !== undefined) {
      this.notice.showText('Another turn is still running in this conversation. Wait for it to finish or cancel it.');
      return;
    }
    // A new conversation starts with the agent set up as chosen; an open one runs as it was set up.
    const options = this.conversationId === undefined ? this.settings.chosen() : undefined;
    if (this.conversationId === undefined && options === undefined) return;
    const view = this.view;
    this.sending = true;
    this.updateComposer();
    this.setProgress('Sending…');
    let started: StartedTurn;
    try {
      started = await this.api.startTurn(message, this.conversationId, options);
    } catch (error) {
      if (view === this.view) this.setProgress('');
      this.onError(error);
      return;
    } finally {
      this.sending = false;
      this.updateComposer();
    }
    // The turn runs whatever the page does; if another conversation is open by now, it shows there.
    if (view !== this.view) return;
    this.notice.clear();
    this.input.value = '';
    const card = new TurnCard(message);
    card.setStatus(started.status);
    this.turns.append(card.element);
    scrollToEnd();
    if (this.conversationId === undefined) {
      this.conversationId = started.conversationId;
      // pushState fires no hashchange: the pane already shows this conversation.
      history.pushState(null, '', conversationHref(started.conversationId));
      this.list.select(started.conversationId);
      this.settings.show(options ?? {});
      this.deleteButton.hidden = false;
      this.onShown(started.conversationId);
      void this.list.reload().then((shown) => {
        const summary = shown.find((c) => c.conversationId === started.conversationId);
        if (summary !== undefined && view === this.view) this.title.textContent = summary.title;
      });
    }
    await this.follow(card, started.links);
  }

  private async follow(card: TurnCard, links: StartedTurn['links']): Promise<void> {
    const stop = new AbortController();
    this.running = { cancelLink: links.cancel, stop };
    this.updateComposer();
    try {
      await followEvents({
        url: links.events,
        send: (url, init) => this.api.send(url, init),
        signal: stop.signal,
        isLast: (event) => event.type === TurnEventType.result,
        onEvent: (event) => {
          const view = eventView(event);
          if (view === undefined) return;
          const atEnd = window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 40;
          const progress = card.apply(view);
          if (progress !== undefined) this.setProgress(progress);
          // Follow the turn as it grows, unless the reader has scrolled up to read something.
          if (atEnd) scrollToEnd();
        },
      });
    } catch (error) {
      if (!stop.signal.aborted) this.onError(error);
    } finally {
      if (this.running?.stop === stop) {
        this.running = undefined;
        this.updateComposer();
        this.onTurnEnded();
      }
    }
  }

  private async cancel(): Promise<void> {
    const running = this.running;
    if (running === undefined) return;
    this.cancelButton.disabled = true;
    this.setProgress('Cancelling…');
    try {
      await this.api.cancel(running.cancelLink);
    } catch (error) {
      // A conflict here means the turn finished first: its result is already on the way.
      if (!(error instanceof ApiError && error.code === 'conflict')) this.onError(error);
    } finally {
      this.cancelButton.disabled = false;
    }
  }

  /** Deletes the open conversation once confirmed, and carries on with a new one. */
  private async deleteOpen(): Promise<void> {
    const conversationId = this.conversationId;
    if (conversationId === undefined) return;
    const confirmed = await confirmAction({
      title: 'Delete this conversation?',
      message: `“${this.title.textContent ?? ''}” and all its turns will be deleted for good. A turn still running in it is cancelled.`,
      confirmLabel: 'Delete',
    });
    if (!confirmed || conversationId !== this.conversationId) return;
    this.deleteButton.disabled = true;
    try {
      await this.api.deleteConversation(conversationId);
      this.notice.clear();
    } catch (error) {
      this.onError(error);
      // Not found: deleted meanwhile (in another tab, say), so it goes from the page all the same.
      if (!(error instanceof ApiError && error.code === 'not_found')) return;
    } finally {
      this.deleteButton.disabled = false;
    }
    this.list.remove(conversationId);
    if (conversationId !== this.conversationId) return;
    // The deleted conversation's address leads nowhere now: it does not stay in the history.
    history.replaceState(null, '', '#/new');
    await this.open(undefined);
  }

  private updateComposer(): void {
    const busy = this.running !== undefined || this.sending;
    this.sendButton.disabled = busy;
    this.cancelButton.hidden = this.running === undefined;
    this.form.setAttribute('aria-busy', String(busy));
  }

  private setProgress(text: string): void {
    this.progress.textContent = text;
  }
}
