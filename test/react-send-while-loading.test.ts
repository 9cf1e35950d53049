import { describe, expect, it } from 'vitest';
import { openPage } from './helpers/browser.ts';
import { serveTestPage } from './helpers/page-bundle.ts';
import { startServer } from './helpers/server.ts';

describe('useChatStream: a message sent as the session opens (its history still loading) (headless Chromium)', () => {
  it('the turn is shown: the user message and a reply with a role, not overwritten by the history load', async () => {
    const app = await serveTestPage('react-send-while-loading.ts');
    const server = await startServer({ ALLOWED_ORIGINS: app.origin, SIM_DELAY_MS: 20 });
    const browser = await openPage(`${app.origin}/?sluice=${encodeURIComponent(server.url)}`);
    if (!browser) return;
    const { page } = browser;
    await page.locator('#new').click();
    await expect
      .poll(
        async () => {
          const res = await fetch(`${server.url}/v1/sessions/fresh/messages`);
          return ((await res.json()) as { messages: Array<{ status: string }> }).messages.at(-1)?.status;
        },
        { timeout: 15_000 },
      )
      .toBe('complete');
    await expect.poll(() => page.locator('#status').textContent()).toBe('ready');
    const last = await page.evaluate(() => window.loadRenders.at(-1)!.messages);
    expect(last.map((m) => [m.role, m.status])).toEqual([
      ['user', 'complete'],
      ['assistant', 'complete'],
    ]);
    await browser.close();
  }, 40_000);
});
