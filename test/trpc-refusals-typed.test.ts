import { describe, expect, it, vi } from 'vitest';
import { streamChat } from '../client/index.ts';
import { chatClient, collect } from './helpers/chat-clients.ts';
import { startServer } from './helpers/server.ts';

const KEY = 'k-alice-0123456789';

/** How a call settled, as an app that reads `error.data.sluiceCode` sees it; 'pending' while it has not. */
function watch(call: Promise<unknown>): { outcome: string } {
  const state = { outcome: 'pending' };
  call.then(
    () => (state.outcome = 'resolved'),
    (error: { message?: string; data?: { sluiceCode?: string } }) => (state.outcome = `${error.data?.sluiceCode ?? 'no sluiceCode'}: ${error.message}`),
  );
  return state;
}

describe('a refusal before tRPC reads the call reaches a tRPC client typed', () => {
  it.each(['ws', 'auto'] as const)(
    "over %s, a second connection past MAX_WS_CONNECTIONS_PER_KEY (the user's second tab) is refused as rate_limited, not 'Unknown error' nor 'server could not be reached'",
    async (transport) => {
      const { url } = await startServer({ API_KEYS: KEY, MAX_WS_CONNECTIONS_PER_KEY: 1 });
      // 'auto' must decide for WebSocket even on a busy machine (its default 3 s would fall back to SSE).
      const first = chatClient({ url, transport, apiKey: KEY, wsConnectTimeoutMs: 15_000 });
      await first.chat.history.query({ sessionId: 's' });

      const second = chatClient({ url, transport, apiKey: KEY, wsConnectTimeoutMs: 15_000 });
      const query = watch(second.chat.history.query({ sessionId: 's' }));
      await vi.waitFor(() => expect(query.outcome).not.toBe('pending'), { timeout: 10_000, interval: 50 });
      expect(query.outcome).toBe('rate_limited: Too many WebSocket connections for this key (limit 1)');

      const stream = watch(collect(streamChat(second, { message: 'hi', sessionId: 's', giveUpAfterMs: 10_000 })));
      await vi.waitFor(() => expect(stream.outcome).not.toBe('pending'), { timeout: 15_000, interval: 50 });
      expect(stream.outcome).toBe('rate_limited: Too many WebSocket connections for this key (limit 1)');
    },
    40_000,
  );

  it('over ws (in Node), a WebSocket upgrade refused for a name the server does not answer to (ALLOWED_HOSTS) fails the calls as forbidden, typed, soon', async () => {
    const server = await startServer({ ALLOWED_HOSTS: 'chat.example.com' });
    const c = chatClient({ url: server.url.replace('127.0.0.1', 'localhost'), transport: 'ws' });
    const query = watch(c.chat.history.query({ sessionId: 's' }));
    await vi.waitFor(() => expect(query.outcome).not.toBe('pending'), { timeout: 10_000, interval: 50 });
    expect(query.outcome).toMatch(/^forbidden: The server refused the WebSocket connection \(403\)/);
    const stream = watch(collect(streamChat(c, { message: 'hi', sessionId: 's', giveUpAfterMs: 10_000 })));
    await vi.waitFor(() => expect(stream.outcome).not.toBe('pending'), { timeout: 15_000, interval: 50 });
    expect(stream.outcome).toMatch(/^forbidden: The server refused the WebSocket connection \(403\)/);
  }, 40_000);

  it('over sse (in Node), a stream refused for a name the server does not answer to (ALLOWED_HOSTS) fails as forbidden, typed, not "Non-200 status code (403)"', async () => {
    const server = await startServer({ ALLOWED_HOSTS: 'chat.example.com' });
    const c = chatClient({ url: server.url.replace('127.0.0.1', 'localhost'), transport: 'sse' });
    const stream = watch(collect(streamChat(c, { message: 'hi', sessionId: 's', giveUpAfterMs: 10_000 })));
    await vi.waitFor(() => expect(stream.outcome).not.toBe('pending'), { timeout: 15_000, interval: 50 });
    expect(stream.outcome).toMatch(/^forbidden: The server refused the stream \(403\)/);
  }, 40_000);

  it.each(['sse', 'auto'] as const)(
    'over %s, a request to a name the server does not answer to (ALLOWED_HOSTS) is refused as forbidden, typed, and soon',
    async (transport) => {
      const server = await startServer({ ALLOWED_HOSTS: 'chat.example.com' });
      // The same server by a name it was not told about (a proxy's, a new domain).
      const url = server.url.replace('127.0.0.1', 'localhost');
      const c = chatClient({ url, transport });
      const query = watch(c.chat.history.query({ sessionId: 's' }));
      await vi.waitFor(() => expect(query.outcome).not.toBe('pending'), { timeout: 10_000, interval: 50 });
      expect(query.outcome).toMatch(/^forbidden: The host localhost is not allowed/);
      // A batch of two: each call refused alike.
      const [a, b] = [watch(c.chat.history.query({ sessionId: 'a' })), watch(c.chat.history.query({ sessionId: 'b' }))];
      await vi.waitFor(() => expect([a.outcome, b.outcome].every((o) => o.startsWith('forbidden: The host localhost'))).toBe(true), {
        timeout: 10_000,
        interval: 50,
      });
    },
    40_000,
  );
});
