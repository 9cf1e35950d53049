import type { Page } from 'playwright-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { simulatedDeltas } from '../server/core/providers/simulated.ts';
import { SessionHistory } from '../shared/index.ts';
import { openPage } from './helpers/browser.ts';
import { bundleTestPage } from './helpers/page-bundle.ts';
import { startIdentityProvider, type IdentityProvider } from './helpers/identity-provider.ts';
import { serveOrigin, type OriginServer } from './helpers/origin-server.ts';
import { startServer, type TestServer } from './helpers/server.ts';

// A web app served from its own origin (A, http://localhost:<port>) uses Sluice on another (B,
// http://127.0.0.1:<port>) with its user's token, in headless Chromium; B lists A in
// ALLOWED_ORIGINS. The same app served from an origin B does not list (C) gets nothing.

let script = '';
let reactScript = '';
beforeAll(async () => {
  [script, reactScript] = await Promise.all([bundleTestPage('cross-origin-app.ts'), bundleTestPage('react-chat.ts')]);
});

const appSite = () =>
  serveOrigin({
    '/': { body: '<!doctype html><html><head><script type="module" src="/app.js"></script></head><body></body></html>', type: 'text/html' },
    '/app.js': { body: script, type: 'text/javascript' },
  });

async function sluiceFor(idp: IdentityProvider, allowed: string, settings: Record<string, string | number | boolean> = {}): Promise<TestServer> {
  return startServer({ AUTH_JWKS_URL: idp.jwksUrl, ALLOWED_ORIGINS: allowed, ...settings });
}

async function resultOf(page: Page): Promise<{ text?: string; last?: string; transport?: string; history?: number; error?: string }> {
  await expect.poll(() => page.evaluate(() => window.sluiceResult !== undefined), { timeout: 20_000 }).toBe(true);
  return page.evaluate(() => window.sluiceResult!);
}

async function historyOf(server: TestServer, token: string, session = 'cross-origin'): Promise<SessionHistory['messages']> {
  const res = await fetch(`${server.url}/v1/sessions/${session}/messages`, { headers: { authorization: `Bearer ${token}` } });
  return SessionHistory.parse(await res.json()).messages;
}

const REPLY = simulatedDeltas('hello from another origin').join('');

describe('a web app on another origin, with its user signed in (headless Chromium)', () => {
  it('streams from Sluice over WebSocket, and over SSE when upgrades are refused', async () => {
    const idp = await startIdentityProvider();
    const app = await appSite();
    const token = await idp.token('alice');
    for (const [transport, settings] of [
      ['ws', {}],
      ['auto', { WS_ENABLED: false }],
    ] as const) {
      const server = await sluiceFor(idp, app.origin, settings);
      const browser = await openPage(`${app.origin}/?sluice=${encodeURIComponent(server.url)}&transport=${transport}#token=${token}`);
      if (!browser) return;
      expect(await resultOf(browser.page)).toEqual({ text: REPLY, last: 'done', history: 2, transport: transport === 'ws' ? 'ws' : 'sse' });
      expect(browser.errors).toEqual([]);
      // Every request went from A's page to B, the server of the app's own files aside.
      expect(browser.requests.filter((url) => !url.startsWith(app.origin)).every((url) => url.startsWith(server.url))).toBe(true);
      expect((await historyOf(server, token)).map((m) => m.content)).toEqual(['hello from another origin', REPLY]);
      await browser.close();
    }
  });

  it('from an origin Sluice does not allow, gets nothing and starts nothing', async () => {
    const idp = await startIdentityProvider();
    const app = await appSite();
    const other: OriginServer = await appSite();
    const token = await idp.token('alice');
    const server = await sluiceFor(idp, app.origin);
    for (const transport of ['sse', 'auto']) {
      const browser = await openPage(`${other.origin}/?sluice=${encodeURIComponent(server.url)}&transport=${transport}#token=${token}`);
      if (!browser) return;
      const result = await resultOf(browser.page);
      expect(result.error).toBeDefined();
      expect(result.text).toBeUndefined();
      // Not even a WebSocket: the upgrade is refused.
      const opened = await browser.page.evaluate(
        (url) =>
          new Promise<boolean>((resolve) => {
            const socket = new WebSocket(url);
            socket.onopen = () => resolve(true);
            socket.onclose = () => resolve(false);
          }),
        `${server.url.replace('http:', 'ws:')}/trpc`,
      );
      expect(opened).toBe(false);
      await browser.close();
    }
    expect(await historyOf(server, token)).toEqual([]);
  });
});

describe('useChatStream (sluice-client/react) in a React app on another origin (headless Chromium)', () => {
  it('shows the history, streams a reply into the page, stops one, and reports a refusal', async () => {
    const idp = await startIdentityProvider();
    const app = await serveOrigin({
      '/': {
        body: '<!doctype html><html><head><script type="module" src="/app.js"></script></head><body><div id="root"></div></body></html>',
        type: 'text/html',
      },
      '/app.js': { body: reactScript, type: 'text/javascript' },
    });
    const server = await sluiceFor(idp, app.origin, { SIM_DELAY_MS: 30, RESUME_GRACE_MS: 60_000 });
    const token = await idp.token('alice');
    await fetch(`${server.url}/v1/chat/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ message: 'earlier question', session_id: 'react' }),
    }).then((res) => res.text());
    const browser = await openPage(`${app.origin}/?sluice=${encodeURIComponent(server.url)}&session=react#token=${token}`);
    if (!browser) return;
    const { page } = browser;
    const items = page.locator('#messages li');
    await expect.poll(() => page.locator('#status').textContent()).toBe('ready');
    expect(await items.count()).toBe(2);
    expect(await items.nth(0).textContent()).toBe('earlier question');

    await page.locator('#message').fill('explain caching');
    await page.locator('#send').click();
    // Part of the reply is in the page while it streams.
    await expect.poll(() => items.last().getAttribute('data-status')).toBe('streaming');
    await expect.poll(async () => (await items.last().textContent())?.length ?? 0).toBeGreaterThan(0);
    await expect.poll(() => items.last().getAttribute('data-status'), { timeout: 15_000 }).toBe('complete');
    expect(await items.last().textContent()).toBe(simulatedDeltas('explain caching').join(''));

    await page.locator('#message').fill('a long story');
    await page.locator('#send').click();
    await expect.poll(() => items.last().textContent(), { timeout: 15_000 }).toContain('Based on');
    await page.locator('#stop').click();
    await expect.poll(() => items.last().getAttribute('data-status')).toBe('interrupted');
    await expect
      .poll(async () => (await historyOf(server, token, 'react')).map((m) => m.status))
      .toEqual(['complete', 'complete', 'complete', 'complete', 'complete', 'interrupted']);
    expect(await page.locator('#status').textContent()).toBe('ready');

    // A message refused before any token (too long) leaves no trace in the page but the error.
    await page.locator('#message').fill('x'.repeat(40_000));
    await page.locator('#send').click();
    await expect.poll(() => page.locator('#status').textContent()).toBe('error');
    expect(await page.locator('#error').textContent()).toContain('message');
    expect(await items.count()).toBe(6);
    expect(browser.errors).toEqual([]);
  });
});
