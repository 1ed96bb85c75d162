import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser, Request as BrowserRequest } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runKeysCommand } from '../../functions/src/keys-cli.js';
import { startFakeAnthropic, type FakeAnthropic } from '../fixtures/fake-anthropic.js';
import { call, prompt, startService, useServiceWithFake, type RunningService } from '../support/service.js';
import {
  chromiumUnavailable,
  eventually,
  expectText,
  fitsWidth,
  lastTurn,
  launchChromium,
  notice,
  openPage,
  screenshot,
  send,
  sessionStorageSize,
  signInWithUserId,
  turns,
  type,
  waitForTurnEnd,
  type Tab,
} from './browser.js';
import { startFakeIdentityToolkit, type FakeIdentityToolkit } from './fake-identity-toolkit.js';
import { startPathFront, type PathFront } from '../support/path-front.js';

const unavailable = chromiumUnavailable();
const describeInBrowser = (title: string, body: () => void) =>
  (unavailable === undefined ? describe : describe.skip)(unavailable === undefined ? title : `${title} (SKIPPED: ${unavailable})`, body);

const WAIT_A_MINUTE = 'node -e "setTimeout(() => {}, 60000)"';
const unique = (name: string) => `${name}-${Date.now().toString(36)}${Math.floor(Math.random() * 1000)}`;

/** One browser for a describe block, a fresh profile per test, and no script error or CSP refusal in any. */
function useBrowser() {
  let browser: Browser | undefined;
  const tabs: Tab[] = [];
  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterEach(async () => {
    const problems = tabs.flatMap((tab) => tab.problems);
    await Promise.all(tabs.splice(0).map((tab) => tab.close()));
    expect(problems).toEqual([]);
  });
  afterAll(async () => {
    await browser?.close();
  });
  return async (url: string, options?: Parameters<typeof openPage>[2]): Promise<Tab> => {
    if (browser === undefined) throw new Error('the browser is not started');
    const tab = await openPage(browser, url, options);
    tabs.push(tab);
    return tab;
  };
}

describeInBrowser('the web page, header sign-in, in Chromium', () => {
  const running = useServiceWithFake();
  const open = useBrowser();

  it('is served at / with a strict Content-Security-Policy, and tells the page the auth modes', async () => {
    const page = await fetch(`${running.service.url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    const csp = page.headers.get('content-security-policy') ?? '';
    for (const directive of ["default-src 'self'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"]) {
      expect(csp).toContain(directive);
    }
    expect(page.headers.get('x-content-type-options')).toBe('nosniff');
    expect(page.headers.get('cache-control')).toBe('no-cache');
    // Relative, so that the page works under a path too (see "under a path prefix" below).
    expect(await page.text()).toContain("add('script', { type: 'module', src: 'app.js' });");
    const script = await fetch(`${running.service.url}/app.js`);
    expect(script.headers.get('content-type')).toMatch(/^text\/javascript/);
    expect((await fetch(`${running.service.url}/styles.css`)).headers.get('content-type')).toMatch(/^text\/css/);
    const config = await call(running.service, 'GET', '/api/client-config');
    expect(config).toEqual({
      status: 200,
      body: { authModes: ['header'], firebase: null, models: ['claude-opus-5-5', 'claude-haiku-5-5'], defaultModel: 'claude-opus-5-5' },
    });
  });

  it('signs in, sends with Enter, shows the status and each tool step live, then the answer with its usage and cost', async () => {
    const user = unique('alice');
    const tab = await open(running.service.url);
    const { page } = tab;
    // Only the configured mode is offered.
    await eventually(() => page.locator('#sign-in-apikey').isHidden()).toBe(true);
    await signInWithUserId(page, user);
    await expectText(page.locator('#conversation-list-empty'), 'No conversations yet.');

    await send(page, 'bash: echo progress-marker');
    const turn = lastTurn(page);
    await expectText(turn.locator('.prompt-text'), 'bash: echo progress-marker');
    await waitForTurnEnd(page, 'Done');
    await expectText(turn.locator('.step-tool'), 'Bash');
    await expectText(turn.locator('.step-tool .step-summary'), 'echo progress-marker');
    await expectText(turn.locator('.step-result'), 'progress-marker');
    await expectText(turn.locator('.answer'), 'tool output: progress-marker');
    await expectText(turn.locator('.usage'), /\d+ input tokens · \d+ output tokens · \d+ model calls · cost \$\S+ · \d+\.\d s/);

    // The progress line (aria-live) told each stage as it happened, in order.
    expect(await page.locator('#progress').getAttribute('aria-live')).toBe('polite');
    const progress = await tab.progress();
    const at = (pattern: RegExp) => progress.findIndex((text) => pattern.test(text));
    expect(at(/^Running Bash: echo progress-marker$/), progress.join(' | ')).toBeGreaterThan(-1);
    expect(at(/^Sending/)).toBeLessThan(at(/^Running Bash/));
    expect(at(/^Running Bash/)).toBeLessThan(at(/^Bash finished$/));
    expect(at(/^Bash finished$/)).toBeLessThan(at(/^Done in /));
    expect(progress.at(-1)).toMatch(/^Done in \d+\.\d s, cost \$\S+\.$/);

    // The new conversation is listed and open, and the address names it.
    const conversationId = decodeURIComponent(new URL(page.url()).hash.replace('#/c/', ''));
    const listed = page.locator('#conversation-list a[aria-current="page"]');
    await expectText(listed, 'bash: echo progress-marker');
    expect(await listed.getAttribute('href')).toBe(`#/c/${conversationId}`);
    await expectText(page.locator('#conversation-title'), 'bash: echo progress-marker');

    // A second prompt continues the same conversation.
    await send(page, 'and again');
    await waitForTurnEnd(page, 'Done');
    await expectText(lastTurn(page).locator('.answer'), 'echo: and again');
    const stored = await call(running.service, 'GET', `/api/conversations/${conversationId}`, { userId: user });
    expect((stored.body.turns as Array<{ prompt: string }>).map((t) => t.prompt)).toEqual(['bash: echo progress-marker', 'and again']);
    // The day's spending (GET /api/usage) follows each turn.
    await expectText(page.locator('#usage-today'), /^Today: 2 turns · [\d,]+ tokens · \$\S+ of \$10\.00$/);

    // Opened afresh (a reload keeps the sign-in for the tab), the conversation shows its turns.
    await page.reload();
    await expectText(page.locator('#account-name'), user);
    await eventually(() => turns(page).count()).toBe(2);
    await expectText(turns(page).first().locator('.answer'), 'tool output: progress-marker');
    await expectText(lastTurn(page).locator('.usage'), 'cost $');
  });

  it('starts a conversation with the model and instructions chosen, shows them, and streams the answer as it grows', async () => {
    const user = unique('stella');
    const { page } = await open(running.service.url);
    await signInWithUserId(page, user);
    // The models the deployment offers, its default chosen.
    expect(await page.evaluate<string[]>("[...document.querySelectorAll('#agent-model option')].map((o) => o.value)")).toEqual([
      'claude-opus-5-5',
      'claude-haiku-5-5',
    ]);
    expect(await page.locator('#agent-model').inputValue()).toBe('claude-opus-5-5');
    await page.locator('#agent-settings summary').click();
    await page.getByLabel('Model').selectOption('claude-haiku-5-5');
    await page.getByLabel(/^Instructions/).fill('Answer like a PELICAN.');
    const callsBefore = running.fake.calls.length;

    await send(page, 'words: 60');
    const answer = lastTurn(page).locator('.answer');
    // Part of the answer shows while the model still writes it.
    const seen: string[] = [];
    await eventually(async () => {
      seen.push((await answer.textContent()) ?? '');
      return seen.at(-1)?.includes('word60');
    }).toBe(true);
    expect(
      seen.some((text) => text.includes('word1 ') && !text.includes('word60')),
      seen.join(' | '),
    ).toBe(true);
    await waitForTurnEnd(page, 'Done');
    await expectText(answer, Array.from({ length: 60 }, (_, i) => `word${i + 1}`).join(' '));
    const main = running.fake.calls.slice(callsBefore).filter((c) => Array.isArray(c.body.tools) && c.body.tools.length > 0);
    expect(main.length).toBeGreaterThan(0);
    expect(main.every((c) => c.body.model === 'claude-haiku-5-5' && JSON.stringify(c.body.system).includes('Answer like a PELICAN.'))).toBe(true);

    // The open conversation says what it runs with, and offers no other choice; a reload shows the same.
    await expectText(page.locator('#conversation-options'), 'Model: claude-haiku-5-5 · Instructions: Answer like a PELICAN.');
    expect(await page.locator('#agent-settings').isHidden()).toBe(true);
    await page.reload();
    await expectText(page.locator('#conversation-options'), 'Model: claude-haiku-5-5 · Instructions: Answer like a PELICAN.');
    // A new conversation offers the choice again, at the defaults.
    await page.locator('#new-conversation').click();
    await eventually(() => page.locator('#agent-settings').isVisible()).toBe(true);
    expect(await page.locator('#agent-model').inputValue()).toBe('claude-opus-5-5');
    expect(await page.locator('#conversation-options').isHidden()).toBe(true);
  });

  it('renders the answer as Markdown, and HTML in it as text that creates no element', async () => {
    const { page } = await open(running.service.url);
    await signInWithUserId(page, unique('markdown'));
    const hostile =
      '**bold** and `code` <img src=x onerror="window.injected=1"> <script>window.injected=2</script> [docs](https://example.com/docs) [bad](javascript:window.injected=3)';
    await send(page, hostile);
    await waitForTurnEnd(page, 'Done');
    const answer = lastTurn(page).locator('.answer');
    await expectText(answer.locator('strong'), 'bold');
    await expectText(answer.locator('code'), 'code');
    // The tags are shown as the model wrote them, as text.
    await expectText(answer, '<img src=x onerror="window.injected=1">');
    await expectText(answer, '<script>window.injected=2</script>');
    await expectText(lastTurn(page).locator('.prompt-text'), '<img src=x onerror="window.injected=1">');
    expect(await page.locator('img').count()).toBe(0);
    expect(await page.locator('body script').count()).toBe(0);
    expect(await page.evaluate<unknown>('window.injected')).toBeUndefined();
    // Links open elsewhere without a referrer; a javascript: link is not made a link at all.
    const link = answer.getByRole('link', { name: 'docs' });
    expect(await link.getAttribute('href')).toBe('https://example.com/docs');
    expect(await link.getAttribute('rel')).toBe('noopener noreferrer');
    expect(await link.getAttribute('target')).toBe('_blank');
    expect(await answer.locator('a[href^="javascript"]').count()).toBe(0);
    await expectText(answer, '[bad](javascript:window.injected=3)');
  });

  it('cancels a running turn from the page', async () => {
    const { page } = await open(running.service.url);
    await signInWithUserId(page, unique('canceller'));
    await send(page, `bash: ${WAIT_A_MINUTE}`);
    const turn = lastTurn(page);
    await expectText(turn.locator('.step-tool .step-summary'), 'setTimeout');
    // While it runs, Send waits and Cancel is offered.
    expect(await page.getByRole('button', { name: 'Send' }).isDisabled()).toBe(true);
    const started = Date.now();
    await page.getByRole('button', { name: 'Cancel turn' }).click();
    await waitForTurnEnd(page, 'Cancelled');
    expect(Date.now() - started).toBeLessThan(10_000);
    await expectText(page.locator('#progress'), 'Cancelled');
    expect(await page.getByRole('button', { name: 'Send' }).isEnabled()).toBe(true);
    const conversationId = decodeURIComponent(new URL(page.url()).hash.replace('#/c/', ''));
    const stored = await call(running.service, 'GET', `/api/conversations/${conversationId}`, {
      userId: await page.locator('#account-name').innerText(),
    });
    expect((stored.body.turns as Array<{ status: string }>)[0]?.status).toBe('cancelled');
  });

  it('deletes a conversation only once confirmed in its dialog, from the mouse or the keyboard, and says in words when it cannot', async () => {
    const user = unique('deleter');
    const { page } = await open(running.service.url);
    await signInWithUserId(page, user);
    const stored = async () =>
      ((await call(running.service, 'GET', '/api/conversations', { userId: user })).body.conversations as Array<{ conversationId: string }>).map(
        (c) => c.conversationId,
      );
    const openId = () => decodeURIComponent(new URL(page.url()).hash.replace('#/c/', ''));
    const deleteButton = page.getByRole('button', { name: 'Delete conversation' });
    const dialog = page.getByRole('dialog', { name: 'Delete this conversation?' });
    const listItems = page.locator('#conversation-list li');
    // A new conversation has nothing to delete yet.
    expect(await deleteButton.isHidden()).toBe(true);
    await send(page, 'keep-or-delete');
    await waitForTurnEnd(page, 'Done');
    const kept = openId();

    // Cancelled with its button, then with Escape: nothing is deleted.
    await deleteButton.click();
    await dialog.waitFor();
    await expectText(dialog, '“keep-or-delete” and all its turns will be deleted');
    expect(await page.locator(':focus').innerText()).toBe('Cancel');
    await screenshot(page, 'web-page-delete-confirm.png');
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await eventually(() => dialog.isVisible()).toBe(false);
    await deleteButton.click();
    await dialog.waitFor();
    await page.keyboard.press('Escape');
    await eventually(() => dialog.isVisible()).toBe(false);
    expect(await stored()).toEqual([kept]);
    await expectText(listItems, 'keep-or-delete');
    await expectText(page.locator('#conversation-title'), 'keep-or-delete');

    // A refusal is told in words, and the conversation stays (the 503 is made up here, in the API's shape).
    await page.route(`**/api/conversations/${kept}`, (route) =>
      route.request().method() === 'DELETE'
        ? route.fulfill({
            status: 503,
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ error: { code: 'unavailable', message: 'the store is not answering' } }),
          })
        : route.continue(),
    );
    await deleteButton.click();
    await dialog.getByRole('button', { name: 'Delete' }).click();
    await expectText(notice(page), 'The service is not available right now. Try again shortly.');
    await expectText(notice(page), 'The service said: the store is not answering');
    await expectText(listItems, 'keep-or-delete');
    await expectText(page.locator('#conversation-title'), 'keep-or-delete');
    await page.unroute(`**/api/conversations/${kept}`);

    // Confirmed from the keyboard alone: it is gone from the service and the list, and a new conversation is open.
    await deleteButton.focus();
    await page.keyboard.press('Enter');
    await dialog.waitFor();
    await page.keyboard.press('Tab');
    expect(await page.locator(':focus').innerText()).toBe('Delete');
    await page.keyboard.press('Enter');
    await eventually(stored).toEqual([]);
    await eventually(() => listItems.count()).toBe(0);
    await expectText(page.locator('#conversation-list-empty'), 'No conversations yet.');
    await expectText(page.locator('#conversation-title'), 'New conversation');
    expect(new URL(page.url()).hash).toBe('#/new');
    expect(await turns(page).count()).toBe(0);
    expect(await deleteButton.isHidden()).toBe(true);
    await eventually(() => notice(page).count()).toBe(0);

    // A turn still running goes with its conversation; the page stops following it.
    await send(page, `bash: ${WAIT_A_MINUTE}`);
    await expectText(lastTurn(page).locator('.step-tool .step-summary'), 'setTimeout');
    await deleteButton.click();
    await dialog.getByRole('button', { name: 'Delete' }).click();
    await eventually(stored).toEqual([]);
    await eventually(() => page.locator('#cancel').isHidden()).toBe(true);
    await expectText(page.locator('#conversation-title'), 'New conversation');
    expect(await turns(page).count()).toBe(0);

    // Deleted elsewhere meanwhile: said so, and it leaves the page all the same.
    await send(page, 'deleted-elsewhere');
    await waitForTurnEnd(page, 'Done');
    const elsewhere = openId();
    expect((await call(running.service, 'DELETE', `/api/conversations/${elsewhere}`, { userId: user })).status).toBe(204);
    await deleteButton.click();
    await dialog.getByRole('button', { name: 'Delete' }).click();
    await expectText(notice(page), 'That conversation does not exist, or it is not yours.');
    await eventually(() => listItems.count()).toBe(0);
    await expectText(page.locator('#conversation-title'), 'New conversation');
  });

  it('says in words why a prompt was refused, picks up a turn already running and cancels it', async () => {
    const user = unique('busy');
    const { page } = await open(running.service.url);
    await signInWithUserId(page, user);
    await send(page, 'first');
    await waitForTurnEnd(page, 'Done');
    const conversationId = decodeURIComponent(new URL(page.url()).hash.replace('#/c/', ''));

    // Another client starts a long turn in this conversation; the page does not know yet.
    const other = await prompt(running.service, user, { message: `bash: ${WAIT_A_MINUTE}`, conversationId }, { prefer: 'respond-async' });
    expect(other.status).toBe(202);
    await type(page, 'me too');
    await expectText(notice(page), 'Another turn is still running in this conversation.');
    await expectText(notice(page), 'The service said:');
    expect(await notice(page).innerText()).not.toMatch(/\b409\b|conflict/);
    // The message stays in the box, to send later.
    expect(await page.getByLabel('Message').inputValue()).toBe('me too');
    await notice(page).getByRole('button', { name: 'Dismiss' }).click();
    await eventually(() => notice(page).count()).toBe(0);

    // A limit, in words and with the wait the service asked for (the 429 is made up here, in the API's shape).
    await page.route('**/api/conversation', (route) =>
      route.fulfill({
        status: 429,
        headers: { 'retry-after': '42', 'content-type': 'application/json' },
        body: JSON.stringify({
          error: {
            code: 'rate_limited',
            message: 'limit turns_per_minute reached: 10 turns a minute',
            details: { limit: 'turns_per_minute', max: 10, retryAfterSeconds: 42 },
          },
        }),
      }),
    );
    await type(page, 'me too');
    await expectText(notice(page), 'Too many requests — try again in 42 s.');
    await expectText(notice(page), 'The service said: limit turns_per_minute reached');
    await page.unroute('**/api/conversation');

    // Opened again, the page follows the running turn (its steps replayed) and can cancel it.
    await page.reload();
    await eventually(() => turns(page).count()).toBe(2);
    await expectText(lastTurn(page).locator('.step-tool .step-summary'), 'setTimeout');
    await page.getByRole('button', { name: 'Cancel turn' }).click();
    await waitForTurnEnd(page, 'Cancelled');
  });

  it('resumes a dropped event stream after the last event it saw (Last-Event-ID), showing nothing twice', async () => {
    const { page, context } = await open(running.service.url);
    await signInWithUserId(page, unique('resumer'));
    const resumedFrom: Array<string | undefined> = [];
    let dropped = false;
    await context.route('**/events', async (route, request: BrowserRequest) => {
      if (dropped) {
        resumedFrom.push(await request.headerValue('last-event-id').then((v) => v ?? undefined));
        return route.continue();
      }
      dropped = true;
      // The first connection delivers three events, then breaks off in the middle of the fourth.
      const whole = await (await route.fetch()).text();
      const blocks = whole.split('\n\n');
      const cut = `${blocks
        .slice(0, 4)
        .join('\n\n')
        .replace(/^retry: \d+/, 'retry: 100')}\n\n${blocks[4]?.slice(0, 20) ?? ''}`;
      await route.fulfill({ status: 200, headers: { 'content-type': 'text/event-stream' }, body: cut });
    });
    await send(page, 'bash: echo resumed-marker');
    await waitForTurnEnd(page, 'Done');
    await expectText(lastTurn(page).locator('.answer'), 'tool output: resumed-marker');
    expect(resumedFrom).toEqual(['3']);
    expect(await lastTurn(page).locator('.step-tool').count()).toBe(1);
    expect(await lastTurn(page).locator('.step-result').count()).toBe(1);
  });

  it("keeps users apart: after sign-out, a second user sees none of the first user's conversations", async () => {
    const alice = unique('alice');
    const bob = unique('bob');
    const { page } = await open(running.service.url);
    await signInWithUserId(page, alice);
    await send(page, 'alice-secret-plan');
    await waitForTurnEnd(page, 'Done');
    const aliceConversation = new URL(page.url()).hash;
    await expectText(page.locator('#conversation-list'), 'alice-secret-plan');

    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('User id').waitFor();
    expect(await sessionStorageSize(page)).toBe(0);
    expect(await page.locator('#turns > li').count()).toBe(0);
    await signInWithUserId(page, bob);
    await expectText(page.locator('#conversation-list-empty'), 'No conversations yet.');
    expect(await page.locator('#conversation-list li').count()).toBe(0);
    expect(await page.locator('body').innerText()).not.toContain('alice-secret-plan');

    // Even at the address of Alice's conversation, Bob gets nothing of it.
    await page.goto(`${running.service.url}/${aliceConversation}`);
    await expectText(notice(page), 'That conversation does not exist, or it is not yours.');
    expect(await page.locator('#turns > li').count()).toBe(0);
    expect(await page.locator('body').innerText()).not.toContain('alice-secret-plan');
  });

  it('works from the keyboard: labelled fields, visible focus, Shift+Enter for a new line', async () => {
    const { page } = await open(running.service.url);
    // The page starts with the focus in the first field.
    await eventually(() => page.locator(':focus').getAttribute('id')).toBe('sign-in-user-id');
    await page.keyboard.type(unique('keys'));
    await page.keyboard.press('Enter');
    await page.getByLabel('Message').waitFor();
    await eventually(() => page.locator(':focus').getAttribute('id')).toBe('composer-input');

    await page.keyboard.type('line one');
    await page.keyboard.press('Shift+Enter');
    await page.keyboard.type('line two');
    expect(await page.getByLabel('Message').inputValue()).toBe('line one\nline two');
    expect(await turns(page).count()).toBe(0);
    await page.keyboard.press('Enter');
    await eventually(() => turns(page).count()).toBe(1);
    await waitForTurnEnd(page, 'Done');
    await expectText(lastTurn(page).locator('.prompt-text'), 'line one\nline two');

    // Tabbing onwards reaches the buttons, and the focused one shows it.
    await page.getByLabel('Message').focus();
    await page.keyboard.press('Tab');
    expect(await page.locator(':focus').innerText()).toBe('Send');
    expect(await page.evaluate<string>('getComputedStyle(document.activeElement).outlineStyle')).toBe('solid');
  });

  describe('the Files panel', () => {
    const files = (page: Tab['page']) => page.getByRole('region', { name: 'Files', exact: true });
    const fileRow = (page: Tab['page'], path: string) => page.locator(`#file-tree li[data-path="${path}"] > .file-row`);
    const filesStatus = (page: Tab['page']) => page.locator('#files-status');
    const openId = (page: Tab['page']) => decodeURIComponent(new URL(page.url()).hash.replace('#/c/', ''));
    const listed = async (user: string, conversationId: string) => {
      const answer = await call(running.service, 'GET', `/api/conversations/${conversationId}/files`, { userId: user });
      expect(answer.status).toBe(200);
      return (answer.body.files as Array<{ path: string; size: number; type: string }>)
        .map(({ path, size, type }) => ({ path, size, type }))
        .sort((a, b) => a.path.localeCompare(b.path));
    };
    /** Clicks `button` and answers the bytes of the download it starts, and the name the page gave it. */
    const downloaded = async (page: Tab['page'], click: () => Promise<void>) => {
      const [download] = await Promise.all([page.waitForEvent('download'), click()]);
      return { name: download.suggestedFilename(), bytes: readFileSync(await download.path()) };
    };

    it('uploads by the button before the first prompt, refreshes when a turn ends, shows text as text, and downloads a file and all of them', async () => {
      const user = unique('files');
      const { page } = await open(running.service.url);
      const dialogs: string[] = [];
      page.on('dialog', (dialog) => {
        dialogs.push(dialog.message());
        void dialog.dismiss();
      });
      await signInWithUserId(page, user);
      await expectText(files(page), 'No files yet.');
      const hostile = '<img src=x onerror=alert(1)>';
      await page.locator('#files-input').setInputFiles([
        { name: 'file.txt', mimeType: 'text/plain', buffer: Buffer.from('apple pie\n') },
        { name: 'hostile.html', mimeType: 'text/html', buffer: Buffer.from(hostile) },
        { name: 'blob.bin', mimeType: 'application/octet-stream', buffer: Buffer.from([0xff, 0xfe, 0x00, 0x01]) },
      ]);
      // No conversation was open: one was made and opened, and the files went into it, one after another.
      await expectText(filesStatus(page), 'Uploaded 3 files.');
      const conversationId = openId(page);
      expect(conversationId).toMatch(/\S/);
      await eventually(() => page.locator('#conversation-list a[aria-current="page"]').count()).toBe(1);
      expect(await listed(user, conversationId)).toEqual([
        { path: 'blob.bin', size: 4, type: 'file' },
        { path: 'file.txt', size: 10, type: 'file' },
        { path: 'hostile.html', size: hostile.length, type: 'file' },
      ]);
      await expectText(fileRow(page, 'file.txt'), '10 B');
      await expectText(page.locator('#conversation-title'), 'New conversation');

      // HTML is shown as its text, and creates no element.
      await page.getByRole('button', { name: 'Show hostile.html' }).click();
      await eventually(() => page.locator('#file-viewer pre').textContent()).toBe(hostile);
      expect(await page.locator('#files img, #turns img').count()).toBe(0);
      // A binary file is offered for download only.
      await page.getByRole('button', { name: 'Show blob.bin' }).click();
      await expectText(page.locator('#file-viewer'), 'This file is not text');
      expect(await page.locator('#file-viewer pre').count()).toBe(0);
      await page.getByRole('button', { name: 'Show file.txt' }).click();
      await eventually(() => page.locator('#file-viewer pre').textContent()).toBe('apple pie\n');

      // The agent changes one file and links another: the panel shows it once the turn has ended.
      await send(page, 'bash: sed -i s/apple/banana/ file.txt && ln -s file.txt link.txt && mkdir -p src/deep && printf xyz > src/deep/made.txt');
      await waitForTurnEnd(page, 'Done');
      // Its first prompt named the conversation made for the upload.
      expect((await call(running.service, 'GET', `/api/conversations/${conversationId}`, { userId: user })).body.title).toMatch(
        /^bash: sed -i s\/apple/,
      );
      await expectText(fileRow(page, 'file.txt'), '11 B');
      await expectText(fileRow(page, 'link.txt'), 'symbolic link → file.txt');
      // Directories are not listed: the tree is made from the paths.
      await expectText(page.locator('#file-tree li[data-path="src/"] li[data-path="src/deep/"] li[data-path="src/deep/made.txt"]'), '3 B');
      // A link is never followed: it cannot be shown or downloaded, only deleted.
      expect(await fileRow(page, 'link.txt').getByRole('button').allInnerTexts()).toEqual(['Delete']);
      // The file on show is shown afresh; closed, it is opened again from the keyboard, its name being a button.
      await eventually(() => page.locator('#file-viewer pre').textContent()).toBe('banana pie\n');
      await page.getByRole('button', { name: 'Close' }).click();
      expect(await page.locator('#file-viewer').isHidden()).toBe(true);
      await page.getByRole('button', { name: 'Show file.txt' }).focus();
      await page.keyboard.press('Enter');
      await eventually(() => page.locator('#file-viewer pre').textContent()).toBe('banana pie\n');
      await eventually(() => page.locator(':focus').getAttribute('id')).toBe('file-viewer-title');
      await files(page).scrollIntoViewIfNeeded();
      await screenshot(page, 'web-page-files.png');

      const one = await downloaded(page, () => page.getByRole('button', { name: 'Download file.txt' }).click());
      expect(one).toEqual({ name: 'file.txt', bytes: Buffer.from('banana pie\n') });
      const tar = await downloaded(page, () => page.getByRole('button', { name: 'Download all (.tar.gz)' }).click());
      expect(tar.name).toBe(`workspace-${conversationId}.tar.gz`);
      expect([...tar.bytes.subarray(0, 2)]).toEqual([0x1f, 0x8b]);
      const zip = await downloaded(page, () => page.getByRole('button', { name: 'Download all (.zip)' }).click());
      expect(zip.bytes.subarray(0, 4).toString('latin1')).toBe('PK\x03\x04');

      // A directory is deleted with everything in it.
      await page.getByRole('button', { name: 'Delete src/ and everything in it' }).click();
      await page.getByRole('dialog', { name: 'Delete src/ and everything in it?' }).getByRole('button', { name: 'Delete' }).click();
      await expectText(filesStatus(page), 'Deleted src/ and everything in it.');
      await eventually(async () => (await listed(user, conversationId)).map((f) => f.path)).toEqual([
        'blob.bin',
        'file.txt',
        'hostile.html',
        'link.txt',
      ]);
      await eventually(() => page.locator('#file-tree li[data-path="src/"]').count()).toBe(0);
      expect(dialogs).toEqual([]);
    });

    it('uploads what is dropped onto the conversation, deletes a file once confirmed, and says why an upload was refused', async () => {
      const user = unique('dropper');
      const { page } = await open(running.service.url);
      await signInWithUserId(page, user);
      // Dropped onto the turns, in the conversation: the drop bubbles up to it.
      await page.evaluate<void>(`(() => {
        const data = new DataTransfer();
        data.items.add(new File(['dropped bytes'], 'dropped.txt', { type: 'text/plain' }));
        data.items.add(new File(['kept'], 'kept.txt', { type: 'text/plain' }));
        document.getElementById('turns').dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
      })()`);
      await expectText(filesStatus(page), 'Uploaded 2 files.');
      const conversationId = openId(page);
      await expectText(fileRow(page, 'dropped.txt'), '13 B');
      expect((await listed(user, conversationId)).map((f) => f.path)).toEqual(['dropped.txt', 'kept.txt']);

      const dialog = page.getByRole('dialog', { name: 'Delete dropped.txt?' });
      await page.getByRole('button', { name: 'Delete dropped.txt' }).click();
      await dialog.getByRole('button', { name: 'Cancel' }).click();
      await eventually(() => dialog.isVisible()).toBe(false);
      expect((await listed(user, conversationId)).map((f) => f.path)).toEqual(['dropped.txt', 'kept.txt']);
      await page.getByRole('button', { name: 'Delete dropped.txt' }).click();
      await dialog.getByRole('button', { name: 'Delete' }).click();
      await expectText(filesStatus(page), 'Deleted dropped.txt.');
      await eventually(() => fileRow(page, 'dropped.txt').count()).toBe(0);
      expect((await listed(user, conversationId)).map((f) => f.path)).toEqual(['kept.txt']);

      // While a turn runs the workspace cannot change, and the page says so.
      await send(page, `bash: ${WAIT_A_MINUTE}`);
      await expectText(lastTurn(page).locator('.step-tool .step-summary'), 'setTimeout');
      await page.locator('#files-input').setInputFiles([{ name: 'late.txt', mimeType: 'text/plain', buffer: Buffer.from('late') }]);
      await expectText(filesStatus(page), 'Could not upload late.txt: a turn is running in this conversation.');
      await page.getByRole('button', { name: 'Cancel turn' }).click();
      await waitForTurnEnd(page, 'Cancelled');

      // A file over the limit is refused with the limit in words (the 413 is made up here, in the API's shape).
      await page.route('**/files/big.bin', (route) =>
        route.fulfill({
          status: 413,
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ error: { code: 'too_large', message: 'a file may be at most 200000 bytes', details: { maxFileBytes: 200000 } } }),
        }),
      );
      await page.locator('#files-input').setInputFiles([{ name: 'big.bin', mimeType: 'application/octet-stream', buffer: Buffer.alloc(1000) }]);
      await expectText(filesStatus(page), 'Could not upload big.bin: it is too large (the service said: a file may be at most 200000 bytes).');
      expect((await listed(user, conversationId)).map((f) => f.path)).toEqual(['kept.txt']);
    });
  });

  it('fits a phone screen without sideways scrolling; a screenshot of the chat is kept', async () => {
    const { page } = await open(running.service.url, { viewport: { width: 390, height: 844 }, mobile: true });
    expect(await fitsWidth(page)).toBe(true);
    await signInWithUserId(page, unique('phone'));
    // An on-screen keyboard has no Shift+Enter: on a touch screen Enter is a new line and Send sends.
    await page.getByLabel('Message').press('Enter');
    expect(await page.getByLabel('Message').inputValue()).toBe('\n');
    expect(await turns(page).count()).toBe(0);
    await send(page, `bash: echo ${'x'.repeat(300)}`, 'tap');
    await waitForTurnEnd(page, 'Done');
    await send(
      page,
      'Here is **Markdown**:\n\n```\nconst wide = "a line of code far wider than any phone screen could ever show at once";\n```\n\n- one\n- two',
      'tap',
    );
    await waitForTurnEnd(page, 'Done');
    await expectText(lastTurn(page).locator('.answer li').first(), 'one');
    expect(await fitsWidth(page)).toBe(true);

    // The Files panel too: a long name, and a file of one long line, shown.
    const longName = `${'a-file-name-far-too-long-for-a-phone-'.repeat(3)}.txt`;
    await page.locator('#files-input').setInputFiles([{ name: longName, mimeType: 'text/plain', buffer: Buffer.from('wide '.repeat(200)) }]);
    await page.getByRole('button', { name: `Show ${longName}` }).tap();
    await expectText(page.locator('#file-viewer pre'), 'wide wide');
    expect(await fitsWidth(page)).toBe(true);

    // The list folds away above the conversation, behind a button that says whether it is open.
    const toggle = page.getByRole('button', { name: 'Conversations' });
    expect(await toggle.getAttribute('aria-expanded')).toBe('false');
    expect(await page.locator('#conversation-list').isVisible()).toBe(false);
    await toggle.click();
    expect(await toggle.getAttribute('aria-expanded')).toBe('true');
    await expectText(page.locator('#conversation-list'), 'bash: echo xxx');
    expect(await fitsWidth(page)).toBe(true);
    await toggle.click();

    await page.evaluate<void>('window.scrollTo(0, document.documentElement.scrollHeight)');
    await screenshot(page, 'web-page-phone.png');
  });

  it('shows the chat on a desktop screen (screenshot)', async () => {
    const { page } = await open(running.service.url);
    await signInWithUserId(page, unique('desktop'));
    await send(page, 'bash: ls -la /workspace && echo hello from the sandbox');
    await waitForTurnEnd(page, 'Done');
    await send(page, 'Summarise in **Markdown**:\n\n1. the sandbox ran `ls`\n2. it printed *hello*');
    await waitForTurnEnd(page, 'Done');
    await page.getByLabel('Message').fill('bash: date');
    const file = await screenshot(page, 'web-page-chat.png');
    expect(file).toMatch(/test-results\/web-page-chat\.png$/);
  });
});

describeInBrowser('the web page under a path prefix (a function at https://REGION-PROJECT.cloudfunctions.net/NAME), in Chromium', () => {
  const running = useServiceWithFake();
  const open = useBrowser();
  let front: PathFront;
  beforeAll(async () => {
    front = await startPathFront(running.service.url, '/clauderun');
  });
  afterAll(async () => front?.close());

  /** Opens the page at `url`, noting every URL it asks for. */
  async function openRecorded(url: string) {
    const tab = await open(url);
    const asked: string[] = [];
    tab.page.on('request', (request: BrowserRequest) => asked.push(request.url()));
    // What was asked before the recording began: the document and what it loaded.
    const loaded = await tab.page.evaluate<string[]>('performance.getEntriesByType("resource").map((e) => e.name)');
    return { tab, asked: () => [...loaded, ...asked] };
  }

  for (const [where, suffix, pickUp] of [
    ['without a trailing slash', '', false],
    ['with a trailing slash', '/', true],
  ] as const) {
    const how = pickUp ? 'a running turn picked up after a reload' : "the 202's links";
    it(`works at /clauderun ${where}: every request stays under the prefix, ${how} included`, async () => {
      const user = unique('prefixed');
      const { tab, asked } = await openRecorded(`${front.url}${suffix}`);
      const { page } = tab;
      await signInWithUserId(page, user);
      await send(page, 'bash: echo under-a-prefix');
      await waitForTurnEnd(page, 'Done');
      await expectText(lastTurn(page).locator('.answer'), 'tool output: under-a-prefix');
      // The page moved itself to /clauderun/ and names the conversation there.
      const address = new URL(page.url());
      expect(address.pathname).toBe('/clauderun/');
      expect(address.hash).toMatch(/^#\/c\/[\w-]+$/);

      // A running turn is followed and cancelled through the 202's links, or through the links
      // the page makes itself for a turn it finds running.
      await send(page, `bash: ${WAIT_A_MINUTE}`);
      await expectText(lastTurn(page).locator('.step-tool .step-summary'), 'setTimeout');
      if (pickUp) {
        await page.reload();
        await eventually(() => turns(page).count()).toBe(2);
        await expectText(lastTurn(page).locator('.step-tool .step-summary'), 'setTimeout');
      }
      await page.getByRole('button', { name: 'Cancel turn' }).click();
      await waitForTurnEnd(page, 'Cancelled');

      // Opened again at its address, the conversation is there.
      await page.reload();
      await eventually(() => turns(page).count()).toBe(2);
      const urls = asked().filter((u) => !u.startsWith('data:'));
      expect(urls.filter((u) => !u.startsWith(`${front.url}/`))).toEqual([]);
      for (const call of ['/clauderun/app.js', '/clauderun/styles.css', '/clauderun/api/conversation', '/clauderun/api/conversations/']) {
        expect(
          urls.some((u) => new URL(u).pathname.startsWith(call)),
          `${call} in ${urls.join(' ')}`,
        ).toBe(true);
      }
      expect(urls.some((u) => /\/clauderun\/api\/conversations\/[\w-]+\/turns\/[\w-]+\/events/.test(u))).toBe(true);
      expect(urls.some((u) => /\/clauderun\/api\/conversations\/[\w-]+\/turns\/[\w-]+\/cancel/.test(u))).toBe(true);
      expect(front.outside).toEqual([]);
    });
  }

  it('is styled by the stylesheet its inline script adds', async () => {
    const { page } = (await openRecorded(front.url)).tab;
    await expectText(page.locator('#sign-in-title'), 'Sign in');
    // A browser's own body margin is 8px; styles.css sets 0.
    expect(await page.evaluate<number>('document.styleSheets.length')).toBeGreaterThan(0);
    expect(await page.evaluate<string>('getComputedStyle(document.body).margin')).not.toBe('8px');
  });

  it('runs its one inline script by hash: the policy names it, and no other inline script', async () => {
    const answer = await fetch(`${front.url}/`);
    const csp = answer.headers.get('content-security-policy') ?? '';
    const html = await answer.text();
    const inline = [...html.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1] ?? '');
    expect(inline).toHaveLength(1);
    const hash = createHash('sha256')
      .update(inline[0] ?? '')
      .digest('base64');
    expect(csp).toContain(`script-src 'self' 'sha256-${hash}';`);
    expect(csp).not.toMatch(/unsafe-inline/);
  });
});

describeInBrowser('the web page, API-key sign-in, in Chromium', () => {
  const running = useServiceWithFake({ CLAUDERUN_AUTH: 'apikey' });
  const open = useBrowser();

  async function createKey(userId: string): Promise<string> {
    let out = '';
    const write = (line: string) => (out += `${line}\n`);
    expect(await runKeysCommand(['create', userId], { CLAUDERUN_DATA_DIR: running.service.dataDir }, { log: write, error: write })).toBe(0);
    const key = /crk_\S+/.exec(out)?.[0];
    if (key === undefined) throw new Error(`no key in: ${out}`);
    return key;
  }

  it('offers the API-key form only, refuses a bad key in words, and works with a good one', async () => {
    const key = await createKey(unique('keyholder'));
    const { page } = await open(running.service.url);
    const form = page.locator('#sign-in-apikey');
    await form.waitFor();
    expect(await page.locator('#sign-in-header').isHidden()).toBe(true);
    expect(await page.getByLabel('API key').getAttribute('type')).toBe('password');

    await page.getByLabel('API key').fill('crk_000000000000_not-a-real-key-at-all-0000000000000000000000');
    await form.getByRole('button', { name: 'Sign in' }).click();
    await expectText(notice(page), 'Your sign-in was not accepted.');
    await expectText(notice(page), 'The service said:');
    expect(await sessionStorageSize(page)).toBe(0);
    await screenshot(page, 'web-page-sign-in.png');

    await page.getByLabel('API key').fill(key);
    await form.getByRole('button', { name: 'Sign in' }).click();
    // The key's id names the account; the secret never appears on the page.
    await expectText(page.locator('#account-name'), `API key ${key.split('_')[1]!}`);
    expect(await page.locator('body').innerText()).not.toContain(key.slice(-20));
    await eventually(() => notice(page).count()).toBe(0);

    await send(page, 'bash: echo key-marker');
    await waitForTurnEnd(page, 'Done');
    await expectText(lastTurn(page).locator('.answer'), 'tool output: key-marker');
    await page.reload();
    await eventually(() => turns(page).count()).toBe(1);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('API key').waitFor();
    expect(await sessionStorageSize(page)).toBe(0);
  });
});

describeInBrowser('the web page, Firebase email and password sign-in, in Chromium', () => {
  const PROJECT = 'clauderun-web-test';
  let identity: FakeIdentityToolkit;
  let model: FakeAnthropic;
  let service: RunningService;
  const open = useBrowser();

  beforeAll(async () => {
    identity = await startFakeIdentityToolkit(PROJECT, {
      'ada@example.com': { password: 'correct horse', uid: 'uid-ada' },
      'eve@example.com': { password: 'elsewhere', uid: 'uid-eve', project: 'some-other-project' },
    });
    model = await startFakeAnthropic();
    service = await startService({
      ANTHROPIC_API_KEY: model.apiKey,
      ANTHROPIC_BASE_URL: model.url,
      CLAUDERUN_AUTH: 'firebase',
      FIREBASE_PROJECT_ID: PROJECT,
      CLAUDERUN_FIREBASE_JWKS_URL: identity.jwksUrl,
      FIREBASE_WEB_API_KEY: identity.apiKey,
      CLAUDERUN_FIREBASE_AUTH_URL: identity.url,
    });
  });
  afterAll(async () => {
    await service?.stop({ removeData: true });
    await model?.close();
    await identity?.close();
  });

  it('tells the page where to sign in and renew its token (beside the emulated Identity Toolkit), and lets it reach only there besides the API', async () => {
    const config = await call(service, 'GET', '/api/client-config');
    expect(config.body).toEqual({
      authModes: ['firebase'],
      firebase: { apiKey: identity.apiKey, projectId: PROJECT, authUrl: identity.url, tokenUrl: identity.tokenUrl },
      models: ['claude-opus-5-5', 'claude-haiku-5-5'],
      defaultModel: 'claude-opus-5-5',
    });
    const csp = (await fetch(`${service.url}/`)).headers.get('content-security-policy') ?? '';
    expect(csp).toContain(`connect-src 'self' ${new URL(identity.url).origin};`);
  });

  it('signs in with email and password, says why a sign-in fails, and runs a turn as that user', async () => {
    const { page } = await open(service.url);
    const form = page.locator('#sign-in-firebase');
    await form.waitFor();
    expect(await page.locator('#sign-in-header').isHidden()).toBe(true);
    expect(await page.locator('#sign-in-apikey').isHidden()).toBe(true);

    await page.getByLabel('Email').fill('ada@example.com');
    await page.getByLabel('Password').fill('wrong');
    await form.getByRole('button', { name: 'Sign in' }).click();
    await expectText(notice(page), 'Wrong email or password.');
    expect(await sessionStorageSize(page)).toBe(0);

    // A token the API does not accept (another project's) is refused before the page keeps it.
    await page.getByLabel('Email').fill('eve@example.com');
    await page.getByLabel('Password').fill('elsewhere');
    await form.getByRole('button', { name: 'Sign in' }).click();
    await expectText(notice(page), 'Your sign-in was not accepted.');
    await expectText(notice(page), 'for this project');
    expect(await sessionStorageSize(page)).toBe(0);

    await page.getByLabel('Email').fill('ada@example.com');
    await page.getByLabel('Password').fill('correct horse');
    await page.getByLabel('Password').press('Enter');
    await expectText(page.locator('#account-name'), 'ada@example.com');
    expect(await page.getByLabel('Password').inputValue()).toBe('');
    await send(page, 'bash: echo firebase-marker');
    await waitForTurnEnd(page, 'Done');
    await expectText(lastTurn(page).locator('.answer'), 'tool output: firebase-marker');
    expect(identity.signIns()).toBe(3);

    // The turn is the token subject's; the service stored it under that user id.
    const conversationId = decodeURIComponent(new URL(page.url()).hash.replace('#/c/', ''));
    expect((await service.clauderun.service.getConversation('uid-ada', conversationId)).turns).toHaveLength(1);
  });

  /** Signs in as `email` in a fresh tab. */
  async function signedIn(email: string, password: string) {
    const tab = await open(service.url);
    await tab.page.getByLabel('Email').fill(email);
    await tab.page.getByLabel('Password').fill(password);
    await tab.page.locator('#sign-in-firebase').getByRole('button', { name: 'Sign in' }).click();
    await expectText(tab.page.locator('#account-name'), email);
    return tab;
  }

  type Kept = { idToken: string; refreshToken: string; expiresAt: number };
  const kept = (page: Tab['page']) => page.evaluate<Kept>("JSON.parse(sessionStorage.getItem('clauderun.identity'))");
  /** Changes the kept identity as the page would find it later (an hour on, say). */
  const keep = (page: Tab['page'], change: Partial<Kept>) =>
    page.evaluate<void, Partial<Kept>>((values) => {
      const key = 'clauderun.identity';
      sessionStorage.setItem(key, JSON.stringify({ ...JSON.parse(sessionStorage.getItem(key) ?? '{}'), ...values }));
    }, change);

  it('renews an expired ID token with the refresh token, silently, and runs the turn as the same user', async () => {
    const { page } = await signedIn('ada@example.com', 'correct horse');
    const before = await kept(page);
    expect(before.refreshToken).toMatch(/^fake-refresh-uid-ada-/);
    const renewals = identity.renewals();
    const signIns = identity.signIns();

    // An hour later, as the page sees it: the first call renews the token before it goes.
    await keep(page, { expiresAt: Date.now() - 1 });
    await page.reload();
    await expectText(page.locator('#account-name'), 'ada@example.com');
    await eventually(async () => (await kept(page)).expiresAt).toBeGreaterThan(Date.now() + 30 * 60_000);
    expect(identity.renewals()).toBe(renewals + 1);
    await send(page, 'bash: echo renewed-marker');
    await waitForTurnEnd(page, 'Done');
    await expectText(lastTurn(page).locator('.answer'), 'tool output: renewed-marker');
    expect(await notice(page).count()).toBe(0);

    // A token the API refuses though it has not expired yet, as the page counts (a clock off, say):
    // renewed and the call sent again, once.
    await keep(page, { idToken: 'not-a-token' });
    await send(page, 'bash: echo retried-marker');
    await waitForTurnEnd(page, 'Done');
    expect(identity.renewals()).toBe(renewals + 2);
    expect((await kept(page)).idToken).not.toBe('not-a-token');
    expect(identity.signIns()).toBe(signIns);
    expect(await notice(page).count()).toBe(0);

    // Both turns are the token subject's.
    const conversationId = decodeURIComponent(new URL(page.url()).hash.replace('#/c/', ''));
    const { turns: stored } = await service.clauderun.service.getConversation('uid-ada', conversationId);
    expect(stored.map((t) => t.prompt)).toEqual(['bash: echo renewed-marker', 'bash: echo retried-marker']);
  });

  it('asks to sign in again, saying why, once the refresh token is revoked', async () => {
    const { page } = await signedIn('ada@example.com', 'correct horse');
    identity.revoke('ada@example.com');
    await keep(page, { expiresAt: Date.now() - 1 });
    await page.reload();
    await expectText(notice(page), 'Your sign-in is no longer valid (it was revoked, or the password was changed). Sign in again.');
    await expectText(notice(page), 'The service said: TOKEN_EXPIRED');
    await page.getByLabel('Email').waitFor();
    expect(await page.locator('#account').isHidden()).toBe(true);
    expect(await sessionStorageSize(page)).toBe(0);

    // The same once signed in: a token the API refuses, and a refresh token that is no good either.
    const again = (await signedIn('ada@example.com', 'correct horse')).page;
    await keep(again, { idToken: 'not-a-token', refreshToken: 'fake-refresh-made-up' });
    await type(again, 'never sent');
    await expectText(notice(again), 'Your sign-in could not be renewed. Sign in again.');
    await again.getByLabel('Email').waitFor();
    expect(await sessionStorageSize(again)).toBe(0);
  });
});

describeInBrowser("the web page, a turn's connections out, in Chromium", () => {
  let model: FakeAnthropic;
  let service: RunningService;
  let registry: http.Server;
  const open = useBrowser();

  beforeAll(async () => {
    registry = http.createServer((_req, res) => res.end('x'.repeat(2500)));
    await new Promise<void>((resolve) => registry.listen(0, '127.0.0.1', resolve));
    model = await startFakeAnthropic();
    service = await startService({
      ANTHROPIC_API_KEY: model.apiKey,
      ANTHROPIC_BASE_URL: model.url,
      CLAUDERUN_EGRESS_ALLOW: 'registry.allowed.test:80',
      CLAUDERUN_EGRESS_TEST_RESOLVE: `registry.allowed.test=127.0.0.1:${(registry.address() as AddressInfo).port}`,
    });
  });
  afterAll(async () => {
    await service?.stop({ removeData: true });
    await model?.close();
    registry?.closeAllConnections();
    await new Promise<void>((resolve) => registry?.close(() => resolve()));
  });

  it('lists each connection under the turn, allowed with its bytes or refused with why, and counts them in its usage and the day', async () => {
    const { page } = await open(service.url);
    await signInWithUserId(page, unique('egress'));
    await send(page, 'bash: curl -sS -o /dev/null http://registry.allowed.test/pkg; curl -sS -o /dev/null http://elsewhere.test/');
    await waitForTurnEnd(page, 'Done');
    const list = lastTurn(page).getByRole('list', { name: 'Connections out' });
    await eventually(() => list.locator('li').allTextContents()).toEqual([
      expect.stringMatching(/^registry\.allowed\.test:80 · 2\.\d kB in, \d+ B out$/),
      expect.stringMatching(/^elsewhere\.test:80 · refused: this deployment does not allow elsewhere\.test:80/),
    ]);
    await expectText(lastTurn(page).locator('.usage'), /· 2 connections out \(2\.\d kB\) ·/);
    await expectText(page.locator('#usage-today'), /· 2\.\d kB of 2\.1 GB out and in$/);
  });
});
