import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Locator, type Page } from 'playwright-core';
import { expect } from 'vitest';
import { WEB_BUILD_DIR } from '../../functions/src/http/web-routes.js';
import { projectRoot } from '../../functions/src/project-root.js';

/** Debian's Chromium: the browser tests drive it and download none. */
export const CHROMIUM = '/usr/bin/chromium';

/** Why the browser tests cannot run here, or undefined when they can. */
export function chromiumUnavailable(): string | undefined {
  return existsSync(CHROMIUM) ? undefined : `${CHROMIUM} is missing (Debian package chromium)`;
}

export async function launchChromium(): Promise<Browser> {
  const built = path.join(projectRoot(), WEB_BUILD_DIR, 'app.js');
  if (!existsSync(built)) throw new Error(`${built} is missing: run npm run build first`);
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // No sandbox (the tests run as root), and nothing that would reach out to the network.
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** Where a test leaves what people look at afterwards (git-ignored). */
export const RESULTS_DIR = path.join(projectRoot(), 'test-results');

export interface Tab {
  page: Page;
  context: BrowserContext;
  /** Script errors and Content-Security-Policy refusals seen so far: a healthy page has none. */
  problems: string[];
  /** Every text the progress line (the aria-live region) showed, in order. */
  progress(): Promise<string[]>;
  close(): Promise<void>;
}

/**
 * Runs in the page before its own script: records every text the progress line shows. (Code for
 * the page is a string here: the test project is type-checked without the DOM's types.)
 */
const RECORD_PROGRESS = `
  window.progressSeen = [];
  document.addEventListener('DOMContentLoaded', () => {
    const progress = document.getElementById('progress');
    if (progress === null) return;
    new MutationObserver(() => {
      const text = progress.textContent ?? '';
      if (text !== '' && window.progressSeen.at(-1) !== text) window.progressSeen.push(text);
    }).observe(progress, { childList: true, characterData: true, subtree: true });
  });
`;

/** A fresh browser profile (its own sessionStorage) on the page. */
export async function openPage(
  browser: Browser,
  url: string,
  options: { viewport?: { width: number; height: number }; mobile?: boolean } = {},
): Promise<Tab> {
  const context = await browser.newContext({
    viewport: options.viewport ?? { width: 1280, height: 800 },
    ...(options.mobile ? { isMobile: true, hasTouch: true, deviceScaleFactor: 2 } : {}),
  });
  context.setDefaultTimeout(30_000);
  await context.addInitScript({ content: RECORD_PROGRESS });
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error' && /Content Security Policy|Refused to/i.test(message.text())) problems.push(`console: ${message.text()}`);
  });
  await page.goto(url);
  return {
    page,
    context,
    problems,
    progress: () => page.evaluate<string[]>('[...window.progressSeen]'),
    close: () => context.close(),
  };
}

/** Polls until the value matches: the page and the service take their time, a fixed sleep would guess. */
export const eventually = <T>(read: () => Promise<T>, timeout = 30_000) => expect.poll(read, { timeout });

/** Waits until the locator's visible text contains `text` (or matches it). */
export async function expectText(locator: Locator, text: string | RegExp, timeout = 30_000): Promise<void> {
  const read = () => locator.innerText({ timeout: 1000 }).catch(() => '');
  try {
    if (typeof text === 'string') await eventually(read, timeout).toContain(text);
    else await eventually(read, timeout).toMatch(text);
  } catch (error) {
    // What the page showed instead is most of the diagnosis.
    const shown = await locator
      .page()
      .locator('body')
      .innerText({ timeout: 1000 })
      .catch(() => '(unreadable)');
    throw new Error(`${(error as Error).message}\n--- the page shows:\n${shown}`, { cause: error });
  }
}

export async function signInWithUserId(page: Page, userId: string): Promise<void> {
  await page.getByLabel('User id').fill(userId);
  await page.locator('#sign-in-header').getByRole('button', { name: 'Sign in' }).click();
  await expectText(page.locator('#account-name'), userId);
}

export const turns = (page: Page) => page.locator('#turns > li');
export const lastTurn = (page: Page) => turns(page).last();
export const notice = (page: Page) => page.getByRole('alert');

/** Types a message in the composer and sends it with Enter (or a tap on Send), without waiting for anything. */
export async function type(page: Page, message: string, by: 'enter' | 'tap' = 'enter'): Promise<void> {
  const box = page.getByLabel('Message');
  await box.fill(message);
  if (by === 'enter') await box.press('Enter');
  else await page.getByRole('button', { name: 'Send' }).tap();
}

/** Sends a message and waits until its turn is on the page. */
export async function send(page: Page, message: string, by: 'enter' | 'tap' = 'enter'): Promise<void> {
  const before = await turns(page).count();
  await type(page, message, by);
  await eventually(() => turns(page).count()).toBe(before + 1);
}

/** Waits until the last turn ends with `status` (in the page's words) and the page is ready for the next. */
export async function waitForTurnEnd(page: Page, status: string | RegExp): Promise<void> {
  await expectText(lastTurn(page).locator('.turn-status'), status);
  await eventually(() => page.locator('#cancel').isHidden()).toBe(true);
}

/** Whether the page fits the window's width (nothing to scroll sideways). */
export const fitsWidth = (page: Page) => page.evaluate<boolean>('document.documentElement.scrollWidth <= window.innerWidth');

export const sessionStorageSize = (page: Page) => page.evaluate<number>('sessionStorage.length');

/** A screenshot of what the window shows, under test-results/; checks that it is a real PNG of some substance. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, name);
  await page.screenshot({ path: file });
  const png = readFileSync(file);
  expect(png.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])), 'PNG signature').toBe(true);
  expect(png.length).toBeGreaterThan(10_000);
  // IHDR: the width and height follow the signature and the chunk header.
  expect(png.readUInt32BE(16)).toBeGreaterThan(300);
  expect(png.readUInt32BE(20)).toBeGreaterThan(300);
  return file;
}
