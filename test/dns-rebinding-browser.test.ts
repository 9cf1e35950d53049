import { chromium, type Browser } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { SessionHistory } from '../shared/index.ts';
import { requireBinary } from './helpers/binaries.ts';
import { startServer } from './helpers/server.ts';

// DNS rebinding as a browser lives it: a site's page, then its name pointed at 127.0.0.1 (here
// Chromium's resolver maps it), where a local Sluice with keys off listens. The page's requests
// are same-origin to the browser: a GET carries no Origin, and to a plain-http name other than
// localhost Chromium sends no Fetch Metadata either. Only the Host names the site.

let browser: Browser | undefined;
afterAll(async () => {
  await browser?.close();
});

async function launch(): Promise<Browser | undefined> {
  const executablePath = requireBinary('chromium');
  if (!executablePath) return undefined;
  browser ??= await chromium.launch({ executablePath, headless: true, args: ['--host-resolver-rules=MAP rebind.test 127.0.0.1'] });
  return browser;
}

/** What a page on `origin` gets from its own origin's API, as status codes. */
async function probe(b: Browser, origin: string): Promise<Record<string, number>> {
  const context = await b.newContext();
  try {
    const page = await context.newPage();
    await page.goto(`${origin}/`);
    return await page.evaluate(async () => {
      const input = (json: unknown) => encodeURIComponent(JSON.stringify({ json }));
      const status = async (path: string, init?: RequestInit) => {
        const res = await fetch(path, init);
        await res.body?.cancel();
        return res.status;
      };
      return {
        history: await status('/v1/sessions/victim/messages'),
        trpcHistory: await status(`/trpc/chat.history?input=${input({ sessionId: 'victim' })}`),
        trpcStream: await status(`/trpc/chat.stream?input=${input({ message: 'planted', sessionId: 'rebound' })}`),
        metrics: await status('/metrics'),
        health: await status('/health'),
      };
    });
  } finally {
    await context.close();
  }
}

describe('DNS rebinding, in Chromium', () => {
  it('a page whose name was rebound to a loopback Sluice reads nothing and starts nothing; its real names still work', async () => {
    const server = await startServer({});
    const b = await launch();
    if (!b) return;
    const port = new URL(server.url).port;
    const seeded = await fetch(`${server.url}/v1/chat/stream`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ message: 'my private thought', session_id: 'victim' }),
    });
    await seeded.text();

    expect(await probe(b, `http://rebind.test:${port}`)).toEqual({ history: 403, trpcHistory: 403, trpcStream: 403, metrics: 403, health: 200 });
    const rebound = await fetch(`${server.url}/v1/sessions/rebound/messages`);
    expect(SessionHistory.parse(await rebound.json()).messages).toEqual([]);

    expect(await probe(b, `http://localhost:${port}`)).toEqual({ history: 200, trpcHistory: 200, trpcStream: 200, metrics: 200, health: 200 });
  });
});
