import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import type { Page } from 'playwright-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { simulatedDeltas } from '../server/core/providers/simulated.ts';
import { SessionHistory } from '../shared/index.ts';
import { openPage } from './helpers/browser.ts';
import { startIdentityProvider, type IdentityProvider } from './helpers/identity-provider.ts';
import { serveOrigin, type OriginServer } from './helpers/origin-server.ts';
import { startServer, type TestServer } from './helpers/server.ts';

// A web app served from its own origin (A, http://localhost:<port>) uses Sluice on another (B,
// http://127.0.0.1:<port>) with its user's token, in headless Chromium; B lists A in
// ALLOWED_ORIGINS. The same app served from an origin B does not list (C) gets nothing.

let script = '';
beforeAll(async () => {
  const result = await esbuild.build({
    entryPoints: [fileURLToPath(new URL('./pages/cross-origin-app.ts', import.meta.url))],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    logLevel: 'error',
  });
  script = result.outputFiles[0]!.text;
});

const appSite = () =>
  serveOrigin({
    '/': { body: '<!doctype html><html><head><script type="module" src="/app.js"></script></head><body></body></html>', type: 'text/html' },
    '/app.js': { body: script, type: 'text/javascript' },
  });

async function sluiceFor(idp: IdentityProvider, allowed: string, settings: Record<string, string | boolean> = {}): Promise<TestServer> {
  return startServer({ AUTH_JWKS_URL: idp.jwksUrl, ALLOWED_ORIGINS: allowed, ...settings });
}

async function resultOf(page: Page): Promise<{ text?: string; last?: string; transport?: string; history?: number; error?: string }> {
  await expect.poll(() => page.evaluate(() => window.sluiceResult !== undefined), { timeout: 20_000 }).toBe(true);
  return page.evaluate(() => window.sluiceResult!);
}

async function historyOf(server: TestServer, token: string): Promise<SessionHistory['messages']> {
  const res = await fetch(`${server.url}/v1/sessions/cross-origin/messages`, { headers: { authorization: `Bearer ${token}` } });
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
