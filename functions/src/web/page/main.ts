import type { ClientConfig } from '../../contract/api.js';
import { AgentSettings } from './agent-settings.js';
import { ApiClient, ApiError, fixedIdentity } from './api.js';
import { Chat } from './chat.js';
import { ConversationList, conversationHref } from './conversation-list.js';
import { byId } from './dom.js';
import { SignInEnded } from './errors.js';
import { FilesPanel } from './files-panel.js';
import { displayName, IdentityStore } from './identity-store.js';
import { Notice } from './notice.js';
import { SignIn } from './sign-in.js';
import { RenewingIdentities } from './token-renewal.js';
import { UsageToday } from './usage-today.js';

/** The page: sign-in or chat, whichever fits the identity kept for this tab. */
async function start(): Promise<void> {
  const notice = new Notice(byId('notice', HTMLDivElement));
  const identities = new IdentityStore(sessionStorage);
  const loading = byId('loading', HTMLParagraphElement);
  let config: ClientConfig;
  try {
    config = await new ApiClient(fixedIdentity(undefined)).clientConfig();
  } catch (error) {
    notice.show(error);
    return;
  } finally {
    loading.hidden = true;
  }

  const renewing = new RenewingIdentities(identities, config.firebase);
  const api = new ApiClient(renewing);
  const account = byId('account', HTMLDivElement);
  const accountName = byId('account-name', HTMLElement);
  const signInView = byId('sign-in-view', HTMLElement);
  const chatView = byId('chat-view', HTMLDivElement);

  const handleError = (error: unknown) => {
    notice.show(error);
    // A refused identity (a revoked key, a token that could not be renewed) is of no further use: back to sign-in.
    const refused = (error instanceof ApiError && error.code === 'unauthenticated') || error instanceof SignInEnded;
    if (refused && identities.current() !== undefined) signOut();
  };
  const list = new ConversationList(api, handleError);
  const usage = new UsageToday(api);
  const settings = new AgentSettings(config);
  const files = new FilesPanel(
    api,
    handleError,
    async (conversationId) => {
      // pushState fires no hashchange: the chat opens the conversation itself, before the upload goes on.
      history.pushState(null, '', conversationHref(conversationId));
      await chat.open(conversationId);
      void list.reload();
    },
    () => settings.chosen(),
    byId('conversation', HTMLElement),
  );
  const chat = new Chat(
    api,
    list,
    notice,
    settings,
    handleError,
    () => {
      // A finished turn moves its conversation to the top, adds to the day's spending, and may have changed its files.
      void list.reload();
      void usage.refresh();
      void files.refresh();
    },
    (conversationId) => files.show(conversationId),
  );
  const signIn = new SignIn(config, notice, (identity) => {
    identities.save(identity);
    showChat();
  });

  function showChat(): void {
    const identity = identities.current();
    if (identity === undefined) return showSignIn();
    accountName.textContent = displayName(identity);
    account.hidden = false;
    signInView.hidden = true;
    chatView.hidden = false;
    void list.reload();
    void usage.refresh();
    void chat.route(location.hash);
  }

  function showSignIn(): void {
    account.hidden = true;
    chatView.hidden = true;
    signInView.hidden = false;
    signIn.reset();
  }

  function signOut(): void {
    identities.clear();
    chat.close();
    list.clear();
    usage.clear();
    // The next person to sign in starts afresh, not at the last one's conversation.
    history.replaceState(null, '', location.pathname);
    showSignIn();
  }

  byId('sign-out', HTMLButtonElement).addEventListener('click', () => {
    notice.clear();
    signOut();
  });
  window.addEventListener('hashchange', () => {
    if (identities.current() !== undefined) void chat.route(location.hash);
  });
  window.addEventListener('unhandledrejection', (event) => handleError(event.reason));

  // An ID token that expired while the tab was away is renewed before the chat shows, so that a
  // refusal goes straight back to sign-in.
  await renewing.current().catch(handleError);
  if (identities.current() === undefined) showSignIn();
  else showChat();
}

void start();
