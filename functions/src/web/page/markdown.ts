import MarkdownIt from 'markdown-it/browser';

/*
 * Model output is untrusted. markdown-it with `html: false` escapes every tag in it, and its link
 * check refuses javascript:, vbscript:, file: and data: URLs; images are turned off so an answer
 * cannot make the browser fetch anything (the page's CSP would block it anyway).
 */
// `breaks`: a chat answer's single line breaks are meant (command output, short lines), as people expect in a chat.
const md = new MarkdownIt({ html: false, linkify: true, breaks: true });
md.disable('image');

const renderDefault: NonNullable<typeof md.renderer.rules.link_open> = (tokens, idx, options, _env, self) => self.renderToken(tokens, idx, options);
const linkOpen = md.renderer.rules.link_open ?? renderDefault;
md.renderer.rules.link_open = (tokens, idx, options, env, self) => {
  const token = tokens[idx];
  // Links open elsewhere and tell the other site nothing about this page.
  token?.attrSet('target', '_blank');
  token?.attrSet('rel', 'noopener noreferrer');
  return linkOpen(tokens, idx, options, env, self);
};

/** Shows `text` as Markdown in `target`: the one place in the page where markup is inserted. */
export function renderMarkdown(target: HTMLElement, text: string): void {
  target.innerHTML = md.render(text);
}
