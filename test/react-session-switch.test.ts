import { describe, expect, it } from 'vitest';
import { openPage } from './helpers/browser.ts';
import { serveTestPage } from './helpers/page-bundle.ts';
import { startServer } from './helpers/server.ts';

describe('useChatStream when the app moves to another session while a reply streams (headless Chromium)', () => {
  it("the other session's messages are shown as stored: nothing of the left reply is written into them", async () => {
    const app = await serveTestPage('react-session-switch.ts');
    const server = await startServer({ ALLOWED_ORIGINS: app.origin, SIM_DELAY_MS: 30 });
    // The second chat has one finished turn.
    await fetch(`${server.url}/v1/chat/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ message: 'earlier question', session_id: 'second' }),
    }).then((res) => res.text());

    const browser = await openPage(`${app.origin}/?sluice=${encodeURIComponent(server.url)}`);
    if (!browser) return;
    const { page } = browser;
    const items = page.locator('#messages li');
    await expect.poll(() => page.locator('#status').textContent()).toBe('ready');
    await page.locator('#send').click();
    await expect.poll(async () => (await items.last().textContent())?.length ?? 0, { timeout: 15_000 }).toBeGreaterThan(0);

    // To the other chat, mid-reply: the left reply is cancelled (unmounting / another session id stops it).
    await page.locator('#switch').click();
    await expect
      .poll(async () => {
        const res = await fetch(`${server.url}/v1/sessions/first/messages`);
        return ((await res.json()) as { messages: Array<{ status: string }> }).messages.at(-1)?.status;
      })
      .toBe('interrupted');
    await expect.poll(() => page.locator('#status').textContent()).toBe('ready');
    await expect.poll(() => items.count()).toBe(2);

    // What the page showed for the second chat, render by render: its stored turn, never a message
    // of the left reply's (a roleless one, or its "interrupted" mark on the second chat's answer).
    // (From its first 'loading' render on: the one render before it still holds the left chat's state.)
    const renders = await page.evaluate(() => window.renders.filter((r) => r.sessionId === 'second'));
    const shown = renders
      .slice(renders.findIndex((r) => r.status === 'loading'))
      .flatMap((r) => r.messages)
      .filter((m) => m.role === undefined || m.status !== 'complete');
    expect(shown).toEqual([]);
    expect(await items.nth(1).getAttribute('data-status')).toBe('complete');
    expect(browser.errors).toEqual([]);
    await browser.close();
  });
});
