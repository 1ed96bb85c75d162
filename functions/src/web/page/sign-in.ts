import type { ClientConfig } from '../../contract/api.js';
import { ApiClient, type Identity, fixedIdentity } from './api.js';
import { byId } from './dom.js';
import { signInWithPassword } from './firebase-sign-in.js';
import type { Notice } from './notice.js';

/**
 * The sign-in forms of the modes this deployment accepts. An identity is kept only once the API
 * has accepted it (one listing call), so a typo is told at once, not at the first prompt.
 */
export class SignIn {
  private readonly forms: HTMLFormElement[] = [];

  constructor(
    config: ClientConfig,
    private readonly notice: Notice,
    private readonly onSignedIn: (identity: Identity) => void,
  ) {
    if (config.authModes.includes('header')) {
      const userId = byId('sign-in-user-id', HTMLInputElement);
      this.enable('sign-in-header', async () => ({ mode: 'header', userId: userId.value.trim() }));
    }
    if (config.authModes.includes('apikey')) {
      const key = byId('sign-in-api-key', HTMLInputElement);
      this.enable('sign-in-apikey', async () => ({ mode: 'apikey', key: key.value.trim() }));
    }
    if (config.authModes.includes('firebase')) {
      const firebase = config.firebase;
      if (firebase === null) {
        byId('sign-in-firebase-unavailable', HTMLParagraphElement).hidden = false;
      } else {
        const email = byId('sign-in-email', HTMLInputElement);
        const password = byId('sign-in-password', HTMLInputElement);
        this.enable('sign-in-firebase', () => signInWithPassword(firebase, email.value.trim(), password.value));
      }
    }
  }

  /** Empties the forms (no key or password stays in the page) and puts the focus in the first. */
  reset(): void {
    for (const form of this.forms) form.reset();
    this.forms[0]?.querySelector('input')?.focus();
  }

  private enable(formId: string, identify: () => Promise<Identity>): void {
    const form = byId(formId, HTMLFormElement);
    form.hidden = false;
    this.forms.push(form);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      void this.submit(form, identify);
    });
  }

  private async submit(form: HTMLFormElement, identify: () => Promise<Identity>): Promise<void> {
    const button = form.querySelector('button');
    if (button !== null) button.disabled = true;
    form.setAttribute('aria-busy', 'true');
    try {
      const identity = await identify();
      await new ApiClient(fixedIdentity(identity)).listConversations();
      this.notice.clear();
      form.reset();
      this.onSignedIn(identity);
    } catch (error) {
      this.notice.show(error);
    } finally {
      if (button !== null) button.disabled = false;
      form.setAttribute('aria-busy', 'false');
    }
  }
}
