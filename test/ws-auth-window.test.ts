import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { get } from 'node:http';
import { connect as connectTcp } from 'node:net';
import WebSocket from 'ws';
import { describe, expect, it } from 'vitest';
import { startServer } from './helpers/server.ts';

const KEY = 'window-key-0123456789abcdef';

/** `sluice_open_connections` by transport, read over a connection of its own (counted as one `http`). */
function openConnections(url: string): Promise<Record<string, number>> {
  return new Promise((resolve, reject) => {
    get(`${url}/metrics`, { agent: false, headers: { authorization: `Bearer ${KEY}` } }, (res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => (text += chunk.toString()));
      res.on('end', () => {
        const counts: Record<string, number> = {};
        for (const [, transport, value] of text.matchAll(/^sluice_open_connections\{transport="([^"]+)"\} (\d+)$/gm)) counts[transport!] = Number(value);
        resolve(counts);
      });
    }).on('error', reject);
  });
}

interface Client {
  readonly ws: WebSocket;
  readonly replies: Array<{ id: unknown; result?: unknown; error?: { json: { data: { code: string } } } }>;
  readonly closed: Promise<{ code: number; at: number }>;
  /** The reply to call `id`. */
  reply(id: number): Promise<Client['replies'][number]>;
}

async function connect(url: string, query = ''): Promise<Client> {
  const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/trpc${query}`);
  const replies: Client['replies'] = [];
  const waiters = new Set<() => void>();
  ws.on('message', (data) => {
    replies.push(JSON.parse(String(data)));
    for (const wake of waiters) wake();
  });
  const closed = once(ws, 'close').then(([code]) => ({ code: code as number, at: performance.now() }));
  await once(ws, 'open');
  const reply = (id: number) =>
    new Promise<Client['replies'][number]>((resolve) => {
      const check = (): void => {
        const found = replies.find((r) => r.id === id);
        if (!found) return;
        waiters.delete(check);
        resolve(found);
      };
      waiters.add(check);
      check();
    });
  return { ws, replies, closed, reply };
}

const history = (id: number) => JSON.stringify({ id, method: 'query', params: { path: 'chat.history', input: { json: { sessionId: 'w' } } } });
const params = (apiKey: string) => JSON.stringify({ method: 'connectionParams', data: { apiKey } });

describe('WebSockets that show no credential', () => {
  it('with keys on: every call is UNAUTHORIZED, they count as ws_unauthenticated (not http), and are closed after WS_AUTH_TIMEOUT_MS', async () => {
    const TIMEOUT = 600;
    const { url } = await startServer({ API_KEYS: KEY, WS_AUTH_TIMEOUT_MS: TIMEOUT });
    const openedAt = performance.now();
    // Thirty that promise connection params and never send them, one without any, one with a wrong key.
    const silent = await Promise.all(Array.from({ length: 30 }, () => connect(url, '?connectionParams=1')));
    const bare = await connect(url);
    const wrong = await connect(url, '?connectionParams=1');
    wrong.ws.send(params('not-a-key'));
    const good = await connect(url, '?connectionParams=1');
    good.ws.send(params(KEY));
    for (const client of [bare, wrong, good]) client.ws.send(history(1));
    expect((await bare.reply(1)).error?.json.data.code).toBe('UNAUTHORIZED');
    expect((await wrong.reply(1)).error?.json.data.code).toBe('UNAUTHORIZED');
    expect((await good.reply(1)).result).toBeDefined();

    // Each WebSocket is counted once: not also as the HTTP connection it was upgraded from.
    expect(await openConnections(url)).toMatchObject({ ws: 1, ws_unauthenticated: 32, http: 1 });

    const closes = await Promise.all([...silent, bare, wrong].map((client) => client.closed));
    for (const { code, at } of closes) {
      expect(code).toBe(1008);
      expect(at - openedAt).toBeGreaterThanOrEqual(TIMEOUT - 50);
      expect(at - openedAt).toBeLessThan(TIMEOUT + 3000);
    }
    // They were told why before the close.
    expect(silent[0]!.replies).toMatchObject([{ id: null, error: { json: { data: { code: 'UNAUTHORIZED', sluiceCode: 'unauthorized' } } } }]);

    // The one with a key stays.
    expect(good.ws.readyState).toBe(WebSocket.OPEN);
    good.ws.send(history(2));
    expect((await good.reply(2)).result).toBeDefined();
    expect(await openConnections(url)).toMatchObject({ ws: 1, ws_unauthenticated: 0, http: 1 });
    good.ws.close();
    await good.closed;
  });

  it("a refused connection whose client never answers the close frame is cut off soon after, not held for ws's 30 s close wait", async () => {
    const TIMEOUT = 300;
    const { url } = await startServer({ API_KEYS: KEY, WS_AUTH_TIMEOUT_MS: TIMEOUT });
    const { port } = new URL(url);
    const openedAt = performance.now();
    // A hand-made client: it completes the upgrade, then reads and never writes (no close frame back).
    const socket = connectTcp(Number(port), '127.0.0.1');
    socket.on('error', () => undefined);
    await once(socket, 'connect');
    socket.write(
      'GET /trpc HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
    await once(socket, 'close');
    expect(received).toMatch(/^HTTP\/1\.1 101 /);
    // The close frame (opcode 0x8) with 1008 went out before the cut.
    expect(received).toContain('\x88');
    expect(performance.now() - openedAt).toBeLessThan(TIMEOUT + 5_000);
    expect(await openConnections(url)).toMatchObject({ ws_unauthenticated: 0 });
  });

  it('with keys off, a WebSocket counts as ws from the start', async () => {
    const { url } = await startServer({ WS_AUTH_TIMEOUT_MS: 200 });
    const waiting = await connect(url, '?connectionParams=1');
    expect(await openConnections(url)).toMatchObject({ ws: 1, http: 1 });
    waiting.ws.send(params('anything'));
    waiting.ws.send(history(1));
    expect((await waiting.reply(1)).result).toBeDefined();
    expect(waiting.ws.readyState).toBe(WebSocket.OPEN);
    waiting.ws.close();
    await waiting.closed;
    expect(await openConnections(url)).toMatchObject({ ws: 0, http: 1 });
  });
});
