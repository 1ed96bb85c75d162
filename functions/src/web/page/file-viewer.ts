import { byId, el } from './dom.js';

/** Shows one file of the workspace below the tree: as text in a <pre> (never as markup), or why it cannot be shown. */
export class FileViewer {
  private readonly section = byId('file-viewer', HTMLElement);
  private readonly title = byId('file-viewer-title', HTMLHeadingElement);
  private readonly body = byId('file-viewer-body', HTMLDivElement);
  private shown: string | undefined;

  constructor() {
    byId('file-viewer-close', HTMLButtonElement).addEventListener('click', () => this.close());
  }

  /** The path of the file on show, if any. */
  get path(): string | undefined {
    return this.shown;
  }

  loading(path: string): void {
    this.show(path, el('p', { className: 'hint', text: 'Loading…' }));
  }

  text(path: string, text: string): void {
    // Focusable, so that a long file can be scrolled from the keyboard.
    this.show(path, el('pre', { className: 'file-text', text, attrs: { tabindex: '0', 'aria-label': `Contents of ${path}` } }));
  }

  /** A file the page does not show (binary, or too large), with a way to download it. */
  downloadOnly(path: string, why: string, download: () => void): void {
    const button = el('button', { className: 'secondary', text: 'Download it', attrs: { type: 'button' } });
    button.addEventListener('click', download);
    this.show(path, el('p', { className: 'hint', text: why }), button);
  }

  close(): void {
    this.shown = undefined;
    this.section.hidden = true;
    this.body.replaceChildren();
  }

  private show(path: string, ...content: Node[]): void {
    const moved = this.shown !== path;
    this.shown = path;
    this.title.textContent = path;
    this.body.replaceChildren(...content);
    this.section.hidden = false;
    // The reader's place moves to the file they asked for, once (not again when it finishes loading).
    if (moved) this.title.focus();
  }
}
