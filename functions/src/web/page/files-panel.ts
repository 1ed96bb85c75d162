import type { AgentOptions, WorkspaceFile } from '../../contract/api.js';
import { ApiError, type ApiClient, type ArchiveFormat } from './api.js';
import { confirmAction } from './confirm.js';
import { byId } from './dom.js';
import { acceptDrops } from './drop-zone.js';
import { saveBlob } from './downloads.js';
import { SignInEnded } from './errors.js';
import { describeFileError } from './file-errors.js';
import { buildTree, renderTree } from './file-tree.js';
import { FileViewer } from './file-viewer.js';
import { formatBytes } from './format.js';
import { asText, MAX_PREVIEW_BYTES } from './text-preview.js';

const baseName = (path: string) => path.split('/').at(-1) ?? path;
const fileCount = (n: number) => `${n} ${n === 1 ? 'file' : 'files'}`;

/** A refused identity is the page's business (back to sign-in), not the panel's. */
const isSignInProblem = (error: unknown) => (error instanceof ApiError && error.code === 'unauthenticated') || error instanceof SignInEnded;

/**
 * The open conversation's workspace: its files as a tree, each shown, downloaded or deleted, the
 * whole as one archive, and files uploaded by the button or dropped onto the conversation. Every
 * call goes through the ApiClient, so that credentials and token renewal apply to them too.
 */
export class FilesPanel {
  private readonly treeHolder = byId('file-tree', HTMLDivElement);
  private readonly note = byId('files-note', HTMLParagraphElement);
  private readonly status = byId('files-status', HTMLParagraphElement);
  private readonly input = byId('files-input', HTMLInputElement);
  private readonly uploadButton = byId('files-upload', HTMLButtonElement);
  private readonly archiveButtons: ReadonlyArray<[HTMLButtonElement, ArchiveFormat]> = [
    [byId('files-download-tar', HTMLButtonElement), 'tar.gz'],
    [byId('files-download-zip', HTMLButtonElement), 'zip'],
  ];
  private readonly viewer = new FileViewer();
  private conversationId: string | undefined;
  /** Counts what the panel showed, so an answer for a conversation left meanwhile is dropped. */
  private view = 0;
  private uploading = false;
  /** The file the viewer was given, as listed then. */
  private shown: WorkspaceFile | undefined;

  constructor(
    private readonly api: ApiClient,
    private readonly onError: (error: unknown) => void,
    /** Opens a conversation just created for an upload made before the first prompt. */
    private readonly openConversation: (conversationId: string) => Promise<void>,
    /** The options chosen for a new conversation; undefined when they cannot be used (the page says why). */
    private readonly newOptions: () => AgentOptions | undefined,
    dropArea: HTMLElement,
  ) {
    this.uploadButton.addEventListener('click', () => this.input.click());
    this.input.addEventListener('change', () => {
      const chosen = [...(this.input.files ?? [])];
      // Cleared, so that choosing the same file again is a change too.
      this.input.value = '';
      void this.upload(chosen);
    });
    for (const [button, format] of this.archiveButtons) button.addEventListener('click', () => void this.downloadAll(format));
    acceptDrops(dropArea, (dropped) => void this.upload(dropped));
    this.show(undefined);
  }

  /** Shows the workspace of the conversation now open (undefined: a new one, with none yet). */
  show(conversationId: string | undefined): void {
    this.view++;
    this.conversationId = conversationId;
    this.shown = undefined;
    this.viewer.close();
    this.treeHolder.replaceChildren();
    this.say('');
    this.showArchiveButtons(false);
    if (conversationId === undefined) this.note.textContent = 'No files yet. Upload some, or drop them onto the conversation.';
    else void this.refresh();
  }

  /** Lists the files again: after a turn has ended, an upload or a deletion. */
  async refresh(): Promise<void> {
    const conversationId = this.conversationId;
    if (conversationId === undefined) return;
    const view = this.view;
    try {
      const listing = await this.api.listFiles(conversationId);
      if (view !== this.view) return;
      const tree = buildTree(listing.files);
      this.treeHolder.replaceChildren(
        renderTree(tree, {
          open: (file) => void this.openFile(file),
          download: (file) => void this.download(file),
          remove: (path, isDirectory) => void this.remove(path, isDirectory),
        }),
      );
      this.note.textContent = listing.truncated
        ? 'Not every file is listed here: download all to get every one.'
        : listing.files.length === 0
          ? 'No files yet. Upload some, or drop them onto the conversation.'
          : '';
      this.showArchiveButtons(listing.files.length > 0);
      this.followShown(listing.files);
    } catch (error) {
      if (view === this.view) this.fail('list the files', error);
    }
  }

  /**
   * Uploads into the workspace's root under each file's own name, one after another (the API
   * takes only a couple of changes at once from one user). Before the first prompt there is no
   * conversation yet: an empty one is made and opened first.
   */
  async upload(chosen: File[]): Promise<void> {
    if (chosen.length === 0) return;
    if (this.uploading) {
      this.say('An upload is already under way. Wait for it to finish.');
      return;
    }
    this.uploading = true;
    this.uploadButton.disabled = true;
    let target = this.conversationId;
    try {
      if (target === undefined) {
        const options = this.newOptions();
        if (options === undefined) return;
        this.say('Creating a conversation for the files…');
        // Untitled: its first prompt names it, as a prompt names the conversation it starts.
        target = await this.api.createConversation(options);
        await this.openConversation(target);
      }
      const into = target;
      const sayHere = (text: string) => {
        if (this.conversationId === into) this.say(text);
      };
      for (const [index, file] of chosen.entries()) {
        sayHere(`Uploading ${file.name} (${formatBytes(file.size)}, ${index + 1} of ${chosen.length})…`);
        try {
          await this.api.putFile(into, file.name, file);
        } catch (error) {
          const uploaded = index === 0 ? '' : ` ${fileCount(index)} uploaded before it.`;
          if (this.conversationId === into) this.fail(`upload ${file.name}`, error, uploaded);
          return;
        }
      }
      sayHere(chosen.length === 1 ? `Uploaded ${chosen[0]?.name ?? 'the file'}.` : `Uploaded ${fileCount(chosen.length)}.`);
    } catch (error) {
      this.fail('create a conversation for the files', error);
    } finally {
      this.uploading = false;
      this.uploadButton.disabled = false;
      if (target !== undefined && target === this.conversationId) await this.refresh();
    }
  }

  /** The file on show, gone or changed (by a turn, say), is closed or shown afresh: it never shows what is no longer there. */
  private followShown(listed: readonly WorkspaceFile[]): void {
    const shown = this.shown;
    if (shown === undefined || this.viewer.path !== shown.path) return;
    const now = listed.find((file) => file.path === shown.path && file.type === 'file');
    if (now === undefined) {
      this.viewer.close();
      this.shown = undefined;
    } else if (now.size !== shown.size || now.modifiedAt !== shown.modifiedAt) {
      void this.openFile(now);
    }
  }

  private async openFile(file: WorkspaceFile): Promise<void> {
    this.shown = file;
    const download = () => void this.download(file);
    if (file.size > MAX_PREVIEW_BYTES) {
      this.viewer.downloadOnly(file.path, `At ${formatBytes(file.size)} it is too large to show here.`, download);
      return;
    }
    const view = this.view;
    this.viewer.loading(file.path);
    try {
      const bytes = await (await this.api.fileBlob(this.conversationIdOrThrow(), file.path)).arrayBuffer();
      if (view !== this.view || this.viewer.path !== file.path) return;
      const text = asText(bytes);
      if (text === undefined) this.viewer.downloadOnly(file.path, 'This file is not text, so it is not shown here.', download);
      else this.viewer.text(file.path, text);
    } catch (error) {
      if (view !== this.view) return;
      this.viewer.close();
      this.fail(`show ${file.path}`, error);
    }
  }

  private async download(file: WorkspaceFile): Promise<void> {
    await this.fetchAndSave(`download ${file.path}`, baseName(file.path), (id) => this.api.fileBlob(id, file.path));
  }

  private async downloadAll(format: ArchiveFormat): Promise<void> {
    const id = this.conversationId;
    if (id === undefined) return;
    await this.fetchAndSave('download the files', `workspace-${id}.${format}`, (conversationId) => this.api.archiveBlob(conversationId, format));
  }

  private async fetchAndSave(what: string, filename: string, fetchBlob: (conversationId: string) => Promise<Blob>): Promise<void> {
    const view = this.view;
    this.say(`Preparing ${filename}…`);
    try {
      const blob = await fetchBlob(this.conversationIdOrThrow());
      if (view !== this.view) return;
      saveBlob(blob, filename);
      this.say(`Downloaded ${filename} (${formatBytes(blob.size)}).`);
    } catch (error) {
      if (view === this.view) this.fail(what, error);
    }
  }

  private async remove(path: string, isDirectory: boolean): Promise<void> {
    const id = this.conversationId;
    if (id === undefined) return;
    const what = isDirectory ? `${path}/ and everything in it` : path;
    const confirmed = await confirmAction({
      title: `Delete ${what}?`,
      message: `${isDirectory ? 'Every file under it' : 'The file'} will be deleted from this conversation's workspace for good.`,
      confirmLabel: 'Delete',
    });
    if (!confirmed || id !== this.conversationId) return;
    this.say(`Deleting ${what}…`);
    try {
      await this.api.deleteFile(id, path);
      if (id === this.conversationId) this.say(`Deleted ${what}.`);
    } catch (error) {
      if (id === this.conversationId) this.fail(`delete ${what}`, error);
    }
    if (id === this.conversationId) await this.refresh();
  }

  private conversationIdOrThrow(): string {
    if (this.conversationId === undefined) throw new Error('no conversation is open');
    return this.conversationId;
  }

  private fail(what: string, error: unknown, after = ''): void {
    if (isSignInProblem(error)) this.onError(error);
    this.say(`${describeFileError(what, error)}${after}`, true);
  }

  private say(text: string, isError = false): void {
    this.status.textContent = text;
    this.status.dataset.error = String(isError);
  }

  private showArchiveButtons(shown: boolean): void {
    for (const [button] of this.archiveButtons) button.hidden = !shown;
  }
}
