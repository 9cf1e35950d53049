import type { Page } from 'playwright-core';
import { describe, expect, it, vi } from 'vitest';
import { createSimulatedProvider, simulatedDeltas } from '../server/core/providers/simulated.ts';
import { SessionHistory } from '../shared/index.ts';
import { openPage } from './helpers/browser.ts';
import { bundleTestPage } from './helpers/page-bundle.ts';
import { recordingProvider } from './helpers/recording-provider.ts';
import { startServer, type TestServer } from './helpers/server.ts';

// `useChat` (`@ai-sdk/react`, resume: true) in Chromium with Sluice as its backend: the page in
// test/pages/ui-chat.ts, bundled here with esbuild and served at the server's own origin (through
// Playwright's routing, so the page's requests to /v1/... reach the real server).

const reply = (prompt: string): string => simulatedDeltas(prompt).join('');

async function history(server: TestServer, chatId: string): Promise<SessionHistory['messages']> {
  return SessionHistory.parse(await (await fetch(`${server.url}/v1/sessions/${chatId}/messages`)).json()).messages;
}

const assistant = (page: Page) => page.locator('#messages li[data-role="assistant"]');
const status = (page: Page) => page.locator('#status').textContent();

async function say(page: Page, text: string): Promise<void> {
  await page.locator('#message').fill(text);
  await page.locator('#message').press('Enter');
}

/** The page's status and its last message, read at one moment (a reloaded page changes both as it resumes). */
const snapshot = (page: Page) =>
  page.evaluate(() => {
    const last = document.querySelector('#messages li:last-child');
    return { status: document.querySelector('#status')?.textContent, role: last?.getAttribute('data-role'), text: last?.textContent ?? '' };
  });

/** Waits until the page's last message is a reply that shows more than `words` words and is still streaming. */
async function waitForWords(page: Page, words: number): Promise<string> {
  let text = '';
  await vi.waitFor(
    async () => {
      const now = await snapshot(page);
      expect(now).toMatchObject({ status: 'streaming', role: 'assistant' });
      expect(now.text.split(' ').length).toBeGreaterThan(words);
      text = now.text;
    },
    { timeout: 15_000, interval: 20 },
  );
  return text;
}

describe('useChat (@ai-sdk/react) against Sluice in Chromium', () => {
  it('streams, Stop cancels the reply on the server, a reload resumes it with its text once, Stop after a reload cancels too', async () => {
    // Slow tokens and a minute-long resume window: a reply that stops did so because of a Stop.
    const recorder = recordingProvider(createSimulatedProvider({ delayMs: 60 }));
    const server = await startServer({ RESUME_GRACE_MS: 60_000 }, { provider: recorder.provider });
    const script = await bundleTestPage('ui-chat.ts');
    const browser = await openPage('about:blank');
    if (!browser) return;
    const { page } = browser;
    await page.route(`${server.url}/ui-test/**`, (route) =>
      route.fulfill(
        route.request().url().includes('/app.js')
          ? { contentType: 'text/javascript', body: script }
          : { contentType: 'text/html', body: '<!doctype html><div id="root"></div><script type="module" src="/ui-test/app.js"></script>' },
      ),
    );
    const chatId = 'ui-browser';
    await page.goto(`${server.url}/ui-test/?chat=${chatId}`);
    await expect.poll(() => status(page)).toBe('ready');

    // 1. Stream, then Stop: the server's reply is cancelled at once, the simulator stopped.
    await say(page, 'first question');
    const shown = await waitForWords(page, 3);
    await page.locator('#stop').click();
    await expect.poll(() => status(page)).toBe('ready');
    await vi.waitFor(() => expect(server.sluice.service.runningCount).toBe(0), { timeout: 2_000 });
    expect(recorder.calls[0]).toMatchObject({ aborted: true, settled: true });
    let messages = await history(server, chatId);
    expect(messages.map((m) => [m.role, m.status])).toEqual([
      ['user', 'complete'],
      ['assistant', 'interrupted'],
    ]);
    expect(messages[1]!.content.startsWith(shown)).toBe(true);
    expect(messages[1]!.content.length).toBeLessThan(reply('first question').length);
    expect(reply('first question').startsWith((await assistant(page).last().textContent()) ?? '')).toBe(true);

    // 2. Reload in the middle of a reply: it resumes, and its text appears exactly once.
    await say(page, 'second question');
    await waitForWords(page, 5);
    await page.reload();
    const full = reply('second question');
    const seen: string[] = [];
    await vi.waitFor(
      async () => {
        const now = await snapshot(page);
        if (now.role === 'assistant') seen.push(now.text);
        expect(now.text).toBe(full);
      },
      { timeout: 15_000, interval: 20 },
    );
    // The page saw the reply resume mid-way, and at every moment a prefix of it: no part twice.
    expect(seen.some((text) => text.length < full.length)).toBe(true);
    for (const text of seen) expect(full.startsWith(text)).toBe(true);
    await expect.poll(() => status(page)).toBe('ready');
    expect(await assistant(page).count()).toBe(2);
    expect(await assistant(page).last().getAttribute('data-status')).toBe('complete');
    expect(recorder.calls).toHaveLength(2); // the reload started no second generation
    messages = await history(server, chatId);
    expect(messages.map((m) => [m.role, m.status])).toEqual([
      ['user', 'complete'],
      ['assistant', 'interrupted'],
      ['user', 'complete'],
      ['assistant', 'complete'],
    ]);
    expect(messages[3]!.content).toBe(full);

    // 3. Stop after a reload: the resumed stream's Stop cancels the reply on the server too.
    await say(page, 'third question');
    await waitForWords(page, 3);
    await page.reload();
    const resumed = await waitForWords(page, 6);
    expect(reply('third question').startsWith(resumed)).toBe(true);
    await page.locator('#stop').click();
    await expect.poll(() => status(page)).toBe('ready');
    await vi.waitFor(() => expect(server.sluice.service.runningCount).toBe(0), { timeout: 2_000 });
    expect(recorder.calls).toHaveLength(3);
    expect(recorder.calls[2]).toMatchObject({ aborted: true, settled: true });
    messages = await history(server, chatId);
    expect(messages.slice(4).map((m) => [m.role, m.status])).toEqual([
      ['user', 'complete'],
      ['assistant', 'interrupted'],
    ]);
    expect(messages[5]!.content.length).toBeLessThan(reply('third question').length);

    expect(await page.locator('#error').textContent()).toBe('');
    expect(browser.errors).toEqual([]);
  });
});
