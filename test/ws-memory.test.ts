import { describe, expect, it, vi } from 'vitest';
import { startSluiceProcess } from './helpers/process.ts';
import { rawWebSocket } from './helpers/raw-ws.ts';
import { rssOf, watchRss } from './helpers/rss.ts';

const MB = 1024 * 1024;

async function openConnections(url: string, transport: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const match = new RegExp(`^sluice_open_connections\\{transport="${transport}"\\} (\\d+)$`, 'm').exec(text);
  return match ? Number(match[1]) : 0;
}

describe('WebSocket memory per connection', () => {
  it('a client that sends queries and never reads their replies costs at most about a reply, and is cut after the send timeout', async () => {
    const server = await startSluiceProcess({
      STORE: 'memory',
      SIM_DELAY_MS: 0,
      RESUME_GRACE_MS: 0,
      MAX_MESSAGE_CHARS: 250_000,
      MAX_BODY_BYTES: 300_000,
      SEND_TIMEOUT_MS: 1000,
    });
    const pid = server.child.pid!;
    // A history of about 1.2 MB: three turns of 200 KB messages (the simulator's reply quotes the message).
    for (let turn = 0; turn < 3; turn++) {
      const res = await fetch(`${server.url}/v1/chat/stream`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ message: `${turn} ${('x'.repeat(99) + ' ').repeat(2000)}`, session_id: 'big' }),
      });
      expect(res.status).toBe(200);
      await res.text();
    }

    const before = rssOf(pid);
    const rss = watchRss(pid);
    const ws = await rawWebSocket(server.url);
    // 300 history queries in small frames (batches of 10): about 360 MB of replies nobody reads.
    const query = (id: number) => ({ id, method: 'query', params: { path: 'chat.history', input: { json: { sessionId: 'big' } } } });
    for (let frame = 0; frame < 30; frame++) ws.send(JSON.stringify(Array.from({ length: 10 }, (_, i) => query(frame * 10 + i + 1))));

    const LIMIT = 64 * MB;
    await vi.waitFor(
      async () => {
        if (rss.peak() - before > LIMIT) return; // already over: no need to wait for the cut
        expect(await openConnections(server.url, 'ws')).toBe(0);
      },
      { timeout: 15_000, interval: 50 },
    );
    const grown = rss.stop() - before;
    expect(grown, `the server's RSS grew by ${Math.round(grown / MB)} MB`).toBeLessThan(LIMIT);
    expect(await openConnections(server.url, 'ws')).toBe(0);
    // The server is fine: it answers the same history to a reader.
    const page = await fetch(`${server.url}/v1/sessions/big/messages`);
    expect(page.status).toBe(200);
    expect((await page.text()).length).toBeGreaterThan(1_200_000);
    await server.stop();
  }, 60_000);

  it('a client that keeps sending while its calls wait is not read past a small inbox: the rest stays in its own buffers', async () => {
    const server = await startSluiceProcess({ STORE: 'memory', SIM_DELAY_MS: 0, MAX_MESSAGE_CHARS: 250_000, MAX_BODY_BYTES: 300_000, SEND_TIMEOUT_MS: 60_000 });
    const pid = server.child.pid!;
    const res = await fetch(`${server.url}/v1/chat/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ message: ('x'.repeat(99) + ' ').repeat(2000), session_id: 'big' }),
    });
    await res.text();
    const ws = await rawWebSocket(server.url);
    // Replies nobody reads: the connection's calls wait for the reader's room (for SEND_TIMEOUT_MS).
    for (let id = 1; id <= 20; id++) ws.send(JSON.stringify({ id, method: 'query', params: { path: 'chat.history', input: { json: { sessionId: 'big' } } } }));
    const before = rssOf(pid);
    const rss = watchRss(pid);
    // Then 64 MB more, in frames of 64 KB, while those wait.
    const pad = 'y'.repeat(64 * 1024);
    for (let id = 100; id < 1100; id++) ws.send(JSON.stringify({ id, method: 'query', params: { path: 'health', input: { json: pad } } }));
    // Once the transfer has settled (nothing more leaves the client), what is left is what the server would not read.
    let last = -1;
    await vi.waitFor(
      () => {
        const now = ws.socket.writableLength;
        const settled = now === last;
        last = now;
        expect(settled).toBe(true);
      },
      { timeout: 20_000, interval: 300 },
    );
    expect(ws.socket.writableLength).toBeGreaterThan(32 * MB);
    const grown = rss.stop() - before;
    expect(grown, `the server's RSS grew by ${Math.round(grown / MB)} MB`).toBeLessThan(24 * MB);
    await server.stop();
  }, 60_000);
});
