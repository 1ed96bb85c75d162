import type { ConversationSummary } from '../../contract/api.js';
import type { ApiClient } from './api.js';
import { byId, el } from './dom.js';
import { formatTime } from './format.js';

export const conversationHref = (conversationId: string) => `#/c/${encodeURIComponent(conversationId)}`;

/** The signed-in user's conversations, most recently active first, a page at a time. */
export class ConversationList {
  private readonly list = byId('conversation-list', HTMLUListElement);
  private readonly empty = byId('conversation-list-empty', HTMLParagraphElement);
  private readonly more = byId('load-more', HTMLButtonElement);
  private readonly sidebar = byId('sidebar', HTMLElement);
  private readonly toggle = byId('toggle-conversations', HTMLButtonElement);
  private nextCursor: string | null = null;
  private current: string | undefined;
  /** Counts reloads, so an older answer arriving late cannot overwrite a newer one. */
  private generation = 0;

  constructor(
    private readonly api: ApiClient,
    private readonly onError: (error: unknown) => void,
  ) {
    this.more.addEventListener('click', () => void this.loadMore());
    // On a narrow screen the list folds away above the conversation.
    this.toggle.addEventListener('click', () => this.setOpen(this.sidebar.dataset.open !== 'true'));
  }

  /** Loads the first page again; answers what it shows (nothing when it failed or was overtaken). */
  async reload(): Promise<ConversationSummary[]> {
    const generation = ++this.generation;
    try {
      const page = await this.api.listConversations();
      if (generation !== this.generation) return [];
      this.list.replaceChildren(...page.conversations.map((c) => this.item(c)));
      this.setCursor(page.nextCursor);
      return page.conversations;
    } catch (error) {
      this.onError(error);
      return [];
    }
  }

  clear(): void {
    this.generation++;
    this.list.replaceChildren();
    this.setCursor(null);
    this.current = undefined;
  }

  /** Takes a deleted conversation off the list at once, without waiting for a reload. */
  remove(conversationId: string): void {
    for (const link of this.list.querySelectorAll('a')) {
      if (link.dataset.conversationId === conversationId) link.closest('li')?.remove();
    }
    this.empty.hidden = this.list.childElementCount > 0;
  }

  /** Marks the open conversation (undefined: a new one) and folds the list away on a phone. */
  select(conversationId: string | undefined): void {
    this.current = conversationId;
    for (const link of this.list.querySelectorAll('a')) {
      if (link.dataset.conversationId === conversationId) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    this.setOpen(false);
  }

  private async loadMore(): Promise<void> {
    if (this.nextCursor === null) return;
    const generation = this.generation;
    this.more.disabled = true;
    try {
      const page = await this.api.listConversations(this.nextCursor);
      if (generation !== this.generation) return;
      this.list.append(...page.conversations.map((c) => this.item(c)));
      this.setCursor(page.nextCursor);
    } catch (error) {
      this.onError(error);
    } finally {
      this.more.disabled = false;
    }
  }

  private setCursor(cursor: string | null): void {
    this.nextCursor = cursor;
    this.more.hidden = cursor === null;
    this.empty.hidden = this.list.childElementCount > 0;
  }

  private setOpen(open: boolean): void {
    this.sidebar.dataset.open = String(open);
    this.toggle.setAttribute('aria-expanded', String(open));
  }

  private item(conversation: ConversationSummary): HTMLLIElement {
    const link = el(
      'a',
      { className: 'conversation-link', attrs: { href: conversationHref(conversation.conversationId) } },
      el('span', { className: 'conversation-title', text: conversation.title }),
      el('time', { className: 'conversation-time', text: formatTime(conversation.updatedAt), attrs: { datetime: conversation.updatedAt } }),
    );
    link.dataset.conversationId = conversation.conversationId;
    if (conversation.conversationId === this.current) link.setAttribute('aria-current', 'page');
    return el('li', {}, link);
  }
}
