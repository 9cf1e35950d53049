import { describe, expect, it } from 'vitest';
import { openPage } from './helpers/browser.ts';
import { serveTestPage } from './helpers/page-bundle.ts';
import { startServer } from './helpers/server.ts';

describe('review: useChatStream when a child component sends as the session changes (headless Chromium)', () => {
  it("the new chat's first message, sent from the composer's effect, is shown with its reply (not sent under the left session's state and dropped as a left turn)", async () => {
    const app = await serveTestPage('react-child-send.ts');
    const server = await startServer({ ALLOWED_ORIGINS: app.origin, SIM_DELAY_MS: 20 });
    const browser = await openPage(`${app.origin}/?sluice=${encodeURIComponent(server.url)}`);
    if (!browser) return;
    const { page } = browser;
    await expect.poll(() => page.locator('#status').textContent()).toBe('ready');
    await page.locator('#new').click();
    // What the server stored for the new chat once its turn is over (status of each message).
    await expect
      .poll(
        async () => {
          const res = await fetch(`${server.url}/v1/sessions/second/messages`);
          return ((await res.json()) as { messages: Array<{ role: string; status: string }> }).messages.map((m) => `${m.role}: ${m.status}`);
        },
        { timeout: 10_000 },
      )
      .toEqual(['user: complete', 'assistant: complete']);
    await expect.poll(() => page.locator('#status').textContent()).toBe('ready');
    // What the page shows for it: the same two messages, the user's as typed.
    const shown = await page
      .locator('#messages li')
      .evaluateAll((items) =>
        items.map(
          (li) => `${li.getAttribute('data-role')}: ${li.getAttribute('data-status')}${li.getAttribute('data-role') === 'user' ? `: ${li.textContent}` : ''}`,
        ),
      );
    expect(shown).toEqual(['user: complete: hello there', 'assistant: complete']);
    expect(browser.errors).toEqual([]);
    await browser.close();
  }, 40_000);
});
