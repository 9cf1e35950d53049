import { describe, expect, it } from 'vitest';
import { openPage } from './helpers/browser.ts';
import { serveTestPage } from './helpers/page-bundle.ts';
import { startServer } from './helpers/server.ts';
import { startTcpProxy } from './helpers/tcp-proxy.ts';

describe('useChatStream after its history failed to load (headless Chromium)', () => {
  it('a message sent once the server is back is sent, not queued for a history load that already failed', async () => {
    const app = await serveTestPage('react-send-after-history-error.ts');
    const server = await startServer({ ALLOWED_ORIGINS: app.origin, SIM_DELAY_MS: 5 });
    const proxy = await startTcpProxy(server.url);
    // The server is unreachable as the page opens (a restart, a network blip)...
    proxy.refuse();
    const browser = await openPage(`${app.origin}/?sluice=${encodeURIComponent(proxy.url)}`);
    if (!browser) return;
    const { page } = browser;
    await expect.poll(() => page.locator('#status').textContent(), { timeout: 15_000 }).toBe('error');
    // ...and back a moment later, when the user sends.
    proxy.release();
    await page.locator('#send').click();
    await expect
      .poll(
        async () => {
          const res = await fetch(`${server.url}/v1/sessions/blip/messages`);
          return ((await res.json()) as { messages: Array<{ content: string }> }).messages.map((m) => m.content)[0] ?? '(nothing sent)';
        },
        { timeout: 10_000 },
      )
      .toBe('sent after the blip');
    await browser.close();
  }, 40_000);
});
