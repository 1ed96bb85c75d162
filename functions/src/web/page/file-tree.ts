import type { WorkspaceFile } from '../../contract/api.js';
import { el } from './dom.js';
import { formatBytes, formatTime } from './format.js';

/**
 * A directory of the workspace. The listing names files only (directories come and go with what
 * is in them), so the tree is derived from the paths.
 */
export interface DirectoryNode {
  name: string;
  /** Relative to the workspace; '' for its root. */
  path: string;
  directories: Map<string, DirectoryNode>;
  files: WorkspaceFile[];
}

const directory = (name: string, path: string): DirectoryNode => ({ name, path, directories: new Map(), files: [] });

export function buildTree(files: readonly WorkspaceFile[]): DirectoryNode {
  const root = directory('', '');
  for (const file of files) {
    const parts = file.path.split('/').filter((part) => part !== '');
    // An empty directory, should the API ever list one, still shows as a directory.
    const leaf = file.type === 'directory' ? undefined : parts.pop();
    let at = root;
    for (const part of parts) {
      let next = at.directories.get(part);
      if (next === undefined) {
        next = directory(part, at.path === '' ? part : `${at.path}/${part}`);
        at.directories.set(part, next);
      }
      at = next;
    }
    if (leaf !== undefined) at.files.push(file);
  }
  return root;
}

/** What a row can do; only regular files can be read, links are shown and never followed. */
export interface TreeActions {
  open(file: WorkspaceFile): void;
  download(file: WorkspaceFile): void;
  remove(path: string, isDirectory: boolean): void;
}

const byName = (a: string, b: string) => a.localeCompare(b);
const baseName = (path: string) => path.split('/').at(-1) ?? path;

/** What a file is, beside its name: its size, or what a link points to. */
function describeEntry(file: WorkspaceFile): string {
  switch (file.type) {
    case 'symlink':
      return `symbolic link → ${file.target ?? '?'}`;
    case 'hardlink':
      return `hard link → ${file.target ?? '?'}`;
    case 'other':
      return 'special file';
    default:
      return formatBytes(file.size);
  }
}

function button(text: string, label: string, className: string, onClick: () => void): HTMLButtonElement {
  const element = el('button', { className, text, attrs: { type: 'button', 'aria-label': label } });
  element.addEventListener('click', onClick);
  return element;
}

function fileItem(file: WorkspaceFile, actions: TreeActions): HTMLLIElement {
  const name = baseName(file.path);
  const readable = file.type === 'file';
  const title = readable
    ? button(name, `Show ${file.path}`, 'file-name link-button', () => actions.open(file))
    : el('span', { className: 'file-name', text: name });
  const meta = el('span', { className: 'file-meta', text: describeEntry(file) });
  if (file.modifiedAt !== null) meta.title = `Changed ${formatTime(file.modifiedAt)}`;
  const row = el('div', { className: 'file-row' }, title, meta);
  if (readable) row.append(button('Download', `Download ${file.path}`, 'secondary small', () => actions.download(file)));
  row.append(button('Delete', `Delete ${file.path}`, 'danger small', () => actions.remove(file.path, false)));
  const item = el('li', { className: `file-entry file-${file.type}` }, row);
  item.dataset.path = file.path;
  return item;
}

function directoryItem(node: DirectoryNode, actions: TreeActions): HTMLLIElement {
  const row = el(
    'div',
    { className: 'file-row' },
    el('span', { className: 'file-name directory-name', text: `${node.name}/` }),
    button('Delete', `Delete ${node.path}/ and everything in it`, 'danger small', () => actions.remove(node.path, true)),
  );
  const item = el('li', { className: 'file-entry file-directory' }, row, renderTree(node, actions));
  item.dataset.path = `${node.path}/`;
  return item;
}

/** The directory as nested lists, directories first; every name goes in as text. */
export function renderTree(node: DirectoryNode, actions: TreeActions): HTMLUListElement {
  const directories = [...node.directories.values()].sort((a, b) => byName(a.name, b.name));
  const files = [...node.files].sort((a, b) => byName(a.path, b.path));
  return el(
    'ul',
    { className: 'file-tree' },
    ...directories.map((child) => directoryItem(child, actions)),
    ...files.map((file) => fileItem(file, actions)),
  );
}
