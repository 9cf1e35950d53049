import { describe, expect, it, vi } from 'vitest';
import { SessionHistory } from '../shared/index.ts';
import { openPage } from './helpers/browser.ts';
import { captureLogs } from './helpers/logs.ts';
import { BLANK_PAGE, serveOrigin } from './helpers/origin-server.ts';
import { startServer, type TestServer } from './helpers/server.ts';
import { rawRequest } from './helpers/sse.ts';

async function history(server: TestServer, sessionId: string): Promise<SessionHistory['messages']> {
  return SessionHistory.parse(await (await fetch(`${server.url}/v1/sessions/${sessionId}/messages`)).json()).messages;
}

describe('a page on another website, with keys off (headless Chromium)', () => {
  it('cannot open the WebSocket to read a history', async () => {
    const server = await startServer();
    await rawRequest(`${server.url}/v1/chat/stream`, {
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ message: 'the secret plan', session_id: 'victim' }),
    });
    const site = await serveOrigin({ '/': BLANK_PAGE });
    const browser = await openPage(`${site.origin}/`);
    if (!browser) return;

    // Opened, the socket would answer chat.history for any session.
    const ws = await browser.page.evaluate(
      (url) =>
        new Promise<{ opened: boolean; data?: string }>((resolve) => {
          const socket = new WebSocket(url);
          socket.onopen = () =>
            socket.send(JSON.stringify({ id: 1, method: 'query', params: { path: 'chat.history', input: { json: { sessionId: 'victim' } } } }));
          socket.onmessage = (event) => {
            resolve({ opened: true, data: String(event.data) });
            socket.close();
          };
          socket.onclose = () => resolve({ opened: false });
        }),
      `${server.url.replace('http:', 'ws:')}/trpc`,
    );
    expect(ws.data ?? '').not.toContain('the secret plan');
    expect(ws.opened).toBe(false);
    expect(browser.errors).toEqual([]);
  });

  it('cannot start a reply with a simple GET of the subscription (no preflight, no Origin)', async () => {
    const { logger, lines } = captureLogs('info');
    const server = await startServer({ LOG_LEVEL: 'info' }, { logger });
    const site = await serveOrigin({ '/': BLANK_PAGE });
    const browser = await openPage(`${site.origin}/`);
    if (!browser) return;

    const input = encodeURIComponent(JSON.stringify({ json: { message: 'planted by another site', sessionId: 'csrf' } }));
    await browser.page.evaluate((url) => fetch(url, { mode: 'no-cors' }).then(() => undefined), `${server.url}/trpc/chat.stream?input=${input}`);
    // Answered (the request's log line is written when its response ends): nothing was started.
    await vi.waitFor(() => expect(lines.some((line) => line.msg === 'request' && line.path === '/trpc/chat.stream')).toBe(true));
    expect(await history(server, 'csrf')).toEqual([]);
    expect(browser.errors).toEqual([]);
  });
});
