import { el } from './dom.js';
import { describeError } from './errors.js';

/** The page's one error area (role="alert" in index.html): a sentence, and the service's words. */
export class Notice {
  constructor(private readonly element: HTMLElement) {}

  show(error: unknown): void {
    const { summary, detail } = describeError(error);
    this.showText(summary, detail);
  }

  showText(summary: string, detail?: string): void {
    const dismiss = el('button', { className: 'notice-dismiss', text: 'Dismiss', attrs: { type: 'button' } });
    dismiss.addEventListener('click', () => this.clear());
    this.element.replaceChildren(
      el('p', { className: 'notice-summary', text: summary }),
      ...(detail === undefined ? [] : [el('p', { className: 'notice-detail', text: `The service said: ${detail}` })]),
      dismiss,
    );
    this.element.hidden = false;
  }

  clear(): void {
    this.element.hidden = true;
    this.element.replaceChildren();
  }
}
