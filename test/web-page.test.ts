import { describe, expect, it, vi } from 'vitest';
import type { Page } from 'playwright-core';
import type { Provider } from '../server/core/providers/provider.ts';
import { simulatedDeltas } from '../server/core/providers/simulated.ts';
import { openPage, saveScreenshot } from './helpers/browser.ts';
import { startIdentityProvider } from './helpers/identity-provider.ts';
import { captureLogs } from './helpers/logs.ts';
import { startServer, type TestServer } from './helpers/server.ts';
import { openSseRoute, rawRequest } from './helpers/sse.ts';
import { startTcpProxy } from './helpers/tcp-proxy.ts';

const reply = (message: string): string => simulatedDeltas(message).join('');

async function history(server: TestServer, sessionId: string): Promise<Array<{ role: string; status: string; content: string }>> {
  const res = await fetch(`${server.url}/v1/sessions/${sessionId}/messages`);
  return ((await res.json()) as { messages: Array<{ role: string; status: string; content: string }> }).messages;
}

/** Sends a message through the page, as a person would: type, Enter. */
async function say(page: Page, message: string): Promise<void> {
  await page.locator('#message').fill(message);
  await page.locator('#message').press('Enter');
}

/** A reply started before the page loads (by this page before a reload, say): it runs on, its client gone. */
async function replyLeftRunning(server: TestServer, message: string, sessionId: string): Promise<void> {
  const earlier = openSseRoute(server.url, { message, session_id: sessionId }, {}, () => undefined);
  await vi.waitFor(() => expect(server.sluice.service.runningCount).toBe(1));
  earlier.cut();
}

const lastReply = (page: Page) => page.locator('#messages li[data-role="assistant"]').last();

describe('browser chat page (headless Chromium)', () => {
  it('loads the session history, streams a reply into the page, all from this server', async () => {
    const server = await startServer({ SIM_DELAY_MS: 40 });
    // A turn before the page opens: it must show up from chat.history.
    await rawRequest(`${server.url}/v1/chat/stream`, {
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ message: 'earlier question', session_id: 'web-1' }),
    });
    const browser = await openPage(`${server.url}/?session=web-1`);
    if (!browser) return;
    const { page } = browser;

    await expect.poll(() => page.locator('#transport').getAttribute('data-transport')).toBe('ws');
    await expect.poll(() => page.locator('#transport').textContent()).toBe('WebSocket');
    await expect.poll(() => page.locator('#messages li').count()).toBe(2);
    expect(await page.locator('#messages li').nth(0).locator('.text').textContent()).toBe('earlier question');
    expect(await page.locator('#session').textContent()).toBe('web-1');

    await say(page, 'explain caching');
    // Part of the reply is in the page while it is still streaming.
    await vi.waitFor(
      async () => {
        const text = (await lastReply(page).locator('.text').textContent()) ?? '';
        expect(text.length).toBeGreaterThan(0);
        expect(await lastReply(page).getAttribute('data-status')).toBe('streaming');
      },
      { timeout: 15_000, interval: 20 },
    );
    expect(await page.locator('#stop').isEnabled()).toBe(true);
    await expect.poll(() => lastReply(page).getAttribute('data-status'), { timeout: 15_000 }).toBe('complete');
    expect(await lastReply(page).locator('.text').textContent()).toBe(reply('explain caching'));
    expect(await page.locator('#stats').textContent()).toMatch(/^first token \d+ ms · 39 tokens · [\d.]+ tokens\/s$/);
    expect(await page.locator('#stop').isEnabled()).toBe(false);

    expect((await history(server, 'web-1')).map((m) => m.status)).toEqual(['complete', 'complete', 'complete', 'complete']);
    // No CDN: every request the page made went to this server.
    const origin = new URL(server.url).origin;
    expect(browser.requests.length).toBeGreaterThan(0);
    for (const url of browser.requests) expect(url.startsWith(origin)).toBe(true);
    expect(browser.errors).toEqual([]);
    await saveScreenshot(page, 'web-page');
    await browser.close();
  });

  it('Stop cancels the reply on the server', async () => {
    // Slow tokens and a long resume window: the stop must come from the page's cancel.
    const server = await startServer({ SIM_DELAY_MS: 150, RESUME_GRACE_MS: 60_000 });
    const browser = await openPage(`${server.url}/?session=web-stop`);
    if (!browser) return;
    const { page } = browser;
    await expect.poll(() => page.locator('#send').isEnabled()).toBe(true);
    await say(page, 'a long story');
    await expect.poll(() => lastReply(page).locator('.text').textContent(), { timeout: 15_000 }).toContain('Based on');
    expect(server.sluice.service.runningCount).toBe(1);

    await page.locator('#stop').click();
    await expect.poll(() => lastReply(page).getAttribute('data-status')).toBe('interrupted');
    expect(await lastReply(page).locator('.badge').textContent()).toMatch(/^interrupted/);
    await vi.waitFor(() => expect(server.sluice.service.runningCount).toBe(0));
    const messages = await history(server, 'web-stop');
    expect(messages.map((m) => [m.role, m.status])).toEqual([
      ['user', 'complete'],
      ['assistant', 'interrupted'],
    ]);
    expect(messages[1]!.content.length).toBeLessThan(reply('a long story').length);
    expect(await page.locator('#send').isEnabled()).toBe(true);
    expect(browser.errors).toEqual([]);
    await saveScreenshot(page, 'web-page-stopped');
    await browser.close();
  });

  it('a reply still running when the page loads (a reload mid-reply) streams on in it, whole from its start, and ends as stored', async () => {
    const server = await startServer({ SIM_DELAY_MS: 60, RESUME_GRACE_MS: 60_000 });
    await replyLeftRunning(server, 'explain caching', 'web-followed');
    const browser = await openPage(`${server.url}/?session=web-followed`);
    if (!browser) return;
    const { page } = browser;
    // The question from history, then the reply streaming on: Send waits for it, Stop is offered.
    await vi.waitFor(
      async () => {
        expect(await page.locator('#messages li').count()).toBe(2);
        expect(await lastReply(page).getAttribute('data-status')).toBe('streaming');
        expect(((await lastReply(page).locator('.text').textContent()) ?? '').length).toBeGreaterThan(0);
      },
      { timeout: 15_000, interval: 20 },
    );
    expect(await page.locator('#messages li').nth(0).locator('.text').textContent()).toBe('explain caching');
    expect(await page.locator('#stop').isEnabled()).toBe(true);
    expect(await page.locator('#send').isEnabled()).toBe(false);
    await expect.poll(() => lastReply(page).getAttribute('data-status'), { timeout: 15_000 }).toBe('complete');
    expect(await lastReply(page).locator('.text').textContent()).toBe(reply('explain caching'));
    expect((await history(server, 'web-followed')).map((m) => [m.role, m.status, m.content])).toEqual([
      ['user', 'complete', 'explain caching'],
      ['assistant', 'complete', reply('explain caching')],
    ]);
    expect(await page.locator('#stop').isEnabled()).toBe(false);
    expect(await page.locator('#send').isEnabled()).toBe(true);
    await say(page, 'next question');
    await expect.poll(() => lastReply(page).getAttribute('data-status'), { timeout: 15_000 }).toBe('complete');
    expect(browser.errors).toEqual([]);
    await browser.close();
  });

  it('a reply still running when the page loads can be stopped from it: it ends interrupted in the page and in history', async () => {
    const server = await startServer({ SIM_DELAY_MS: 150, RESUME_GRACE_MS: 60_000 });
    await replyLeftRunning(server, 'a long story', 'web-reloaded');
    const browser = await openPage(`${server.url}/?session=web-reloaded`);
    if (!browser) return;
    const { page } = browser;
    await expect.poll(() => lastReply(page).getAttribute('data-status'), { timeout: 15_000 }).toBe('streaming');
    // Enter while it streams sends nothing: the session has its reply.
    await say(page, 'next question');
    expect(await page.locator('#message').inputValue()).toBe('next question');
    expect(await page.locator('#messages li').count()).toBe(2);
    expect(await page.locator('#stop').isEnabled()).toBe(true);
    await page.locator('#stop').click();
    await vi.waitFor(() => expect(server.sluice.service.runningCount).toBe(0));
    await expect.poll(() => lastReply(page).getAttribute('data-status')).toBe('interrupted');
    expect(await lastReply(page).locator('.badge').textContent()).toBe('interrupted: cancelled');
    const stored = await history(server, 'web-reloaded');
    expect(stored.map((m) => m.status)).toEqual(['complete', 'interrupted']);
    expect(await lastReply(page).locator('.text').textContent()).toBe(stored[1]!.content);
    expect(await page.locator('#stop').isEnabled()).toBe(false);
    await page.locator('#message').press('Enter');
    await expect.poll(() => lastReply(page).getAttribute('data-status'), { timeout: 15_000 }).toBe('complete');
    expect(browser.errors).toEqual([]);
    await browser.close();
  });

  it('a followed reply whose stream is cut (the network drops) is followed again to its end, not shown as interrupted', async () => {
    const server = await startServer({ SIM_DELAY_MS: 100, RESUME_GRACE_MS: 60_000 });
    await replyLeftRunning(server, 'explain caching', 'web-follow-cut');
    const proxy = await startTcpProxy(server.url);
    const browser = await openPage(`${proxy.url}/?session=web-follow-cut`);
    if (!browser) return;
    const { page } = browser;
    await vi.waitFor(
      async () => {
        expect(await lastReply(page).getAttribute('data-status')).toBe('streaming');
        expect(((await lastReply(page).locator('.text').textContent()) ?? '').length).toBeGreaterThan(0);
      },
      { timeout: 15_000, interval: 20 },
    );
    proxy.dropAll();
    await expect.poll(() => lastReply(page).getAttribute('data-status'), { timeout: 20_000 }).toBe('complete');
    expect(await lastReply(page).locator('.text').textContent()).toBe(reply('explain caching'));
    expect(await page.locator('#messages li').count()).toBe(2);
    expect((await history(server, 'web-follow-cut')).map((m) => m.status)).toEqual(['complete', 'complete']);
    expect(await page.locator('#send').isEnabled()).toBe(true);
    expect(browser.errors).toEqual([]);
    await browser.close();
  });

  it('a reply that ends between the history read and the follow request is shown, from the history read again', async () => {
    const server = await startServer({ SIM_DELAY_MS: 20, RESUME_GRACE_MS: 60_000 });
    await replyLeftRunning(server, 'explain caching', 'web-follow-gap');
    // The follow request waits until the reply has ended: the gap between the history's answer and it, made wide.
    const browser = await openPage(`${server.url}/?session=web-follow-gap`, (page) =>
      page.route('**/v1/ui/chat/*/stream', async (route) => {
        await vi.waitFor(() => expect(server.sluice.service.runningCount).toBe(0), { timeout: 15_000 });
        await route.continue();
      }),
    );
    if (!browser) return;
    const { page } = browser;
    await expect.poll(() => page.locator('#messages li').count(), { timeout: 15_000 }).toBe(2);
    expect(await lastReply(page).getAttribute('data-status')).toBe('complete');
    expect(await lastReply(page).locator('.text').textContent()).toBe(reply('explain caching'));
    expect(browser.errors).toEqual([]);
    await browser.close();
  });

  it('with WebSocket upgrades refused, works over SSE and shows SSE as the transport', async () => {
    const server = await startServer({ WS_ENABLED: false, SIM_DELAY_MS: 10 });
    const browser = await openPage(`${server.url}/?session=web-sse`);
    if (!browser) return;
    const { page } = browser;
    await expect.poll(() => page.locator('#transport').getAttribute('data-transport')).toBe('sse');
    expect(await page.locator('#transport').textContent()).toBe('SSE (WebSocket unavailable)');
    await say(page, 'hello over sse');
    await expect.poll(() => lastReply(page).getAttribute('data-status'), { timeout: 15_000 }).toBe('complete');
    expect(await lastReply(page).locator('.text').textContent()).toBe(reply('hello over sse'));
    expect((await history(server, 'web-sse')).map((m) => m.status)).toEqual(['complete', 'complete']);
    expect(browser.errors).toEqual([]);
    await saveScreenshot(page, 'web-page-sse');
    await browser.close();
  });

  it.each(['ws', 'sse'] as const)('over %s, shows a dropped connection and the reconnect, and the reply resumes', async (transport) => {
    const server = await startServer({ SIM_DELAY_MS: 60, RESUME_GRACE_MS: 20_000 });
    const proxy = await startTcpProxy(server.url);
    const browser = await openPage(`${proxy.url}/?session=web-drop-${transport}&transport=${transport}`);
    if (!browser) return;
    const { page } = browser;
    await expect.poll(() => page.locator('#transport').getAttribute('data-transport')).toBe(transport);
    await say(page, 'explain caching');
    await expect.poll(() => lastReply(page).locator('.text').textContent(), { timeout: 15_000 }).toContain('Based on');
    proxy.dropAll();
    await expect.poll(() => page.locator('#connection').textContent(), { timeout: 15_000 }).toBe('reconnected (1)');
    await expect.poll(() => lastReply(page).getAttribute('data-status'), { timeout: 15_000 }).toBe('complete');
    // Every token exactly once: resumed where it was, not restarted.
    expect(await lastReply(page).locator('.text').textContent()).toBe(reply('explain caching'));
    expect(browser.errors).toEqual([]);
    await browser.close();
  });

  it('shows a long reply arriving all at once by the frame, not by the token: no layout per token, whole at the end', async () => {
    const deltas = Array.from({ length: 3000 }, (_, i) => `w${i} `);
    const burst: Provider = {
      name: 'burst',
      async *stream() {
        yield* deltas;
      },
    };
    const server = await startServer({}, { provider: burst });
    const browser = await openPage(`${server.url}/?session=web-long`);
    if (!browser) return;
    const { page } = browser;
    await expect.poll(() => page.locator('#transport').getAttribute('data-transport')).toBe('ws');
    // Each scroll to the end forces a layout of the whole page: counted.
    await page.evaluate(() => {
      const counted = window as unknown as { scrolls: number };
      counted.scrolls = 0;
      const scrollTo = window.scrollTo.bind(window);
      window.scrollTo = ((...args: Parameters<typeof window.scrollTo>) => {
        counted.scrolls++;
        scrollTo(...args);
      }) as typeof window.scrollTo;
    });
    await say(page, 'a long one');
    await expect.poll(() => lastReply(page).getAttribute('data-status'), { timeout: 20_000 }).toBe('complete');
    expect(await lastReply(page).locator('.text').textContent()).toBe(deltas.join(''));
    const scrolls = await page.evaluate(() => (window as unknown as { scrolls: number }).scrolls);
    expect(scrolls).toBeLessThan(deltas.length / 10);
  });

  it('serves the page and its bundle itself, with validators, and 404s unknown assets', async () => {
    const server = await startServer();
    const page = await rawRequest(`${server.url}/`, { method: 'GET' });
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    // Connections to this server only: its own WebSocket (ws: or wss:, behind a TLS proxy), none elsewhere.
    const { port } = new URL(server.url);
    expect(page.headers['content-security-policy']).toContain(`connect-src 'self' ws://127.0.0.1:${port} wss://127.0.0.1:${port};`);
    expect(page.headers.vary).toMatch(/Host/);
    const html = page.body.toString();
    expect(html).toContain('<script type="module" src="/assets/app.js"></script>');
    expect(html).not.toMatch(/(src|href)="https?:/);
    const js = await rawRequest(`${server.url}/assets/app.js`, { method: 'GET' });
    expect(js.status).toBe(200);
    expect(js.headers['content-type']).toBe('text/javascript; charset=utf-8');
    // The browser entry of the typed client: no Node packages in the bundle.
    expect(js.body.toString()).not.toMatch(/from\s*"(ws|eventsource|node:[a-z]+)"/);
    const again = await rawRequest(`${server.url}/assets/app.js`, { method: 'GET', headers: { 'if-none-match': String(js.headers.etag) } });
    expect(again.status).toBe(304);
    expect((await rawRequest(`${server.url}/assets/app.css`, { method: 'GET' })).status).toBe(200);
    expect((await rawRequest(`${server.url}/assets/nope.js`, { method: 'GET' })).status).toBe(404);
  });
});

describe('browser chat page with keys or tokens on (headless Chromium)', () => {
  const KEY = 'page-key-0123456789abcdef';

  it('asks for a token, then loads the history and streams over WebSocket; a token in the fragment needs no asking, and no token reaches the logs', async () => {
    const idp = await startIdentityProvider();
    const { logger, lines } = captureLogs('info');
    const server = await startServer({ AUTH_JWKS_URL: idp.jwksUrl, API_KEYS: KEY, SIM_DELAY_MS: 10, LOG_LEVEL: 'info' }, { logger });
    const token = await idp.token('alice');
    await rawRequest(`${server.url}/v1/chat/stream`, {
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ message: 'earlier question', session_id: 'web-auth' }),
    });
    const browser = await openPage(`${server.url}/?session=web-auth`);
    if (!browser) return;
    const { page } = browser;
    await expect.poll(() => page.locator('#signin').isVisible()).toBe(true);
    expect(await page.locator('#messages li').count()).toBe(0);
    await saveScreenshot(page, 'web-page-signin');
    await page.locator('#token').fill('not-a-valid-token');
    await page.locator('#token').press('Enter');
    await expect.poll(() => page.locator('#signin-reason').textContent()).toBe('The server refused that token. Paste another one.');

    await page.locator('#token').fill(token);
    await page.locator('#token').press('Enter');
    await expect.poll(() => page.locator('#messages li').count()).toBe(2);
    expect(await page.locator('#signin').isVisible()).toBe(false);
    expect(await page.locator('#transport').getAttribute('data-transport')).toBe('ws');
    await say(page, 'hello with a token');
    await expect.poll(() => lastReply(page).getAttribute('data-status'), { timeout: 15_000 }).toBe('complete');
    expect(await lastReply(page).locator('.text').textContent()).toBe(reply('hello with a token'));
    await saveScreenshot(page, 'web-page-signed-in');
    await browser.close();

    // A link that carries the token after `#`: no form, and the token leaves the address bar.
    const linked = await openPage(`${server.url}/?session=web-auth#token=${encodeURIComponent(token)}`);
    if (!linked) return;
    await expect.poll(() => linked.page.locator('#messages li').count()).toBe(4);
    expect(await linked.page.locator('#signin').isVisible()).toBe(false);
    expect(linked.page.url()).not.toContain(token);
    expect(linked.page.url()).toContain('session=web-auth');
    expect(linked.errors).toEqual([]);
    await linked.close();
    expect(JSON.stringify(lines)).not.toContain(token);
  });

  it("a #token= link to a tab already signed in leaves the address bar at once, and replaces the tab's key only if the user says so", async () => {
    const OTHER = 'other-key-0123456789abcdef';
    const server = await startServer({ API_KEYS: `${KEY},${OTHER}`, SIM_DELAY_MS: 10 });
    const browser = await openPage(`${server.url}/?session=web-fixation#token=${KEY}`);
    if (!browser) return;
    const { page } = browser;
    await expect.poll(() => page.evaluate(() => document.body.dataset.ready)).toBe('true');
    const held = (): Promise<string | null> => page.evaluate(() => sessionStorage.getItem('sluice.token'));
    expect(await held()).toBe(KEY);
    // Someone else's link, opened in this tab: only the fragment changes, the page is not loaded again.
    const asked: string[] = [];
    page.once('dialog', (dialog) => {
      asked.push(dialog.message());
      void dialog.dismiss();
    });
    await page.evaluate((other) => (location.hash = `token=${other}`), OTHER);
    await expect.poll(() => page.url()).not.toContain(OTHER);
    expect(asked).toHaveLength(1);
    expect(await held()).toBe(KEY);
    // Said yes: the tab uses the link's key from then on.
    page.once('dialog', (dialog) => void dialog.accept());
    await page.evaluate((other) => (location.hash = `token=${other}`), OTHER);
    await expect.poll(held).toBe(OTHER);
    await expect.poll(() => page.url()).not.toContain(OTHER);
    await browser.close();
  });

  it('streams over SSE with the token when WebSocket upgrades are refused', async () => {
    const { logger, lines } = captureLogs('info');
    const server = await startServer({ API_KEYS: KEY, WS_ENABLED: false, SIM_DELAY_MS: 10, LOG_LEVEL: 'info' }, { logger });
    const browser = await openPage(`${server.url}/?session=web-auth-sse#token=${KEY}`);
    if (!browser) return;
    const { page } = browser;
    await expect.poll(() => page.locator('#transport').getAttribute('data-transport')).toBe('sse');
    await expect.poll(() => page.evaluate(() => document.body.dataset.ready)).toBe('true');
    await say(page, 'over sse with a key');
    await expect.poll(() => lastReply(page).getAttribute('data-status'), { timeout: 15_000 }).toBe('complete');
    expect(await lastReply(page).locator('.text').textContent()).toBe(reply('over sse with a key'));
    const res = await fetch(`${server.url}/v1/sessions/web-auth-sse/messages`, { headers: { authorization: `Bearer ${KEY}` } });
    expect(((await res.json()) as { messages: unknown[] }).messages).toHaveLength(2);
    // On SSE the key travels in the URL's query (connectionParams); the request log never has the query.
    expect(lines.some((line) => line.path === '/trpc/chat.stream')).toBe(true);
    expect(JSON.stringify(lines)).not.toContain(KEY);
    expect(browser.errors).toEqual([]);
  });
});
