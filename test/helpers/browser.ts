import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach } from 'vitest';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { requireBinary } from './binaries.ts';

/** Where tests save what a person may want to look at (gitignored). */
export const ARTIFACTS_DIR = fileURLToPath(new URL('../../test-artifacts/', import.meta.url));

let browser: Promise<Browser> | undefined;
const contexts = new Set<BrowserContext>();

afterEach(async () => {
  for (const context of [...contexts]) {
    contexts.delete(context);
    await context.close();
  }
});
afterAll(async () => {
  const b = browser;
  browser = undefined;
  if (b) await (await b).close();
});

export interface BrowserPage {
  readonly page: Page;
  /** Uncaught exceptions in the page so far. */
  readonly errors: string[];
  /** Every URL the page requested. */
  readonly requests: string[];
  close(): Promise<void>;
}

/**
 * A fresh page in real headless Chromium (Debian's `chromium`, driven by playwright-core). One
 * browser per test file; the page's context is closed after the test. Undefined when chromium is
 * not installed locally.
 */
export async function openPage(url: string, beforeLoad?: (page: Page) => Promise<unknown>): Promise<BrowserPage | undefined> {
  const executablePath = requireBinary('chromium');
  if (!executablePath) return undefined;
  browser ??= chromium.launch({ executablePath, headless: true });
  const context = await (await browser).newContext({ viewport: { width: 960, height: 720 } });
  contexts.add(context);
  const page = await context.newPage();
  const errors: string[] = [];
  const requests: string[] = [];
  page.on('pageerror', (error) => errors.push(String(error)));
  page.on('request', (request) => requests.push(request.url()));
  await beforeLoad?.(page);
  await page.goto(url);
  return {
    page,
    errors,
    requests,
    close: async () => {
      contexts.delete(context);
      await context.close();
    },
  };
}

/** Saves a screenshot of the whole page under test-artifacts/; returns its path. */
export async function saveScreenshot(page: Page, name: string): Promise<string> {
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  const path = `${ARTIFACTS_DIR}${name}.png`;
  await page.screenshot({ path, fullPage: true });
  return path;
}
