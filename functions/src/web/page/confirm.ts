import { byId } from './dom.js';

export interface Confirmation {
  title: string;
  message: string;
  /** The button that goes ahead, named for what it does ("Delete"), never just "OK". */
  confirmLabel: string;
}

/**
 * Asks before something that cannot be undone, in the page's own modal <dialog> rather than
 * window.confirm (which the page cannot label or style, and some browsers suppress): showModal()
 * keeps the focus inside, Escape cancels, and the focus starts on Cancel so that a stray Enter
 * does no harm. Answers true only for the confirming button.
 */
export function confirmAction(confirmation: Confirmation): Promise<boolean> {
  const dialog = byId('confirm-dialog', HTMLDialogElement);
  const ok = byId('confirm-ok', HTMLButtonElement);
  const cancel = byId('confirm-cancel', HTMLButtonElement);
  byId('confirm-title', HTMLHeadingElement).textContent = confirmation.title;
  byId('confirm-message', HTMLParagraphElement).textContent = confirmation.message;
  ok.textContent = confirmation.confirmLabel;
  // Where the focus goes back to once the dialog closes (showModal does not do it everywhere).
  const opener = document.activeElement instanceof HTMLElement ? document.activeElement : null;
  return new Promise((resolve) => {
    const controller = new AbortController();
    const { signal } = controller;
    ok.addEventListener('click', () => dialog.close('confirm'), { signal });
    cancel.addEventListener('click', () => dialog.close('cancel'), { signal });
    // Escape closes the dialog with the returnValue it had, which is reset here.
    dialog.addEventListener(
      'close',
      () => {
        controller.abort();
        opener?.focus();
        resolve(dialog.returnValue === 'confirm');
      },
      { signal },
    );
    dialog.returnValue = '';
    dialog.showModal();
    cancel.focus();
  });
}
