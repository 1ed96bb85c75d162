import type { ApiClient } from './api.js';
import { byId } from './dom.js';
import { usageToday } from './format.js';

/** The user's spending today, under the conversation list. */
export class UsageToday {
  private readonly element = byId('usage-today', HTMLParagraphElement);

  constructor(private readonly api: ApiClient) {}

  async refresh(): Promise<void> {
    try {
      this.element.textContent = usageToday(await this.api.usage());
      this.element.hidden = false;
    } catch {
      // A nice-to-have: if it cannot be read (an older service, a hiccup), the page works without it.
      this.clear();
    }
  }

  clear(): void {
    this.element.hidden = true;
    this.element.textContent = '';
  }
}
