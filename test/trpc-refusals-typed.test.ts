import { afterEach, describe, expect, it, vi } from 'vitest';
import { closeChatClient, createChatClient, type ChatClient } from '../client/index.ts';
import { startServer } from './helpers/server.ts';

const clients: ChatClient[] = [];
function client(options: Parameters<typeof createChatClient>[0]): ChatClient {
  const c = createChatClient(options);
  clients.push(c);
  return c;
}
afterEach(async () => {
  for (const c of clients.splice(0)) await closeChatClient(c);
});

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
  it.each(['sse', 'auto'] as const)(
    'over %s, a request to a name the server does not answer to (ALLOWED_HOSTS) is refused as forbidden, typed, and soon',
    async (transport) => {
      const server = await startServer({ ALLOWED_HOSTS: 'chat.example.com' });
      // The same server by a name it was not told about (a proxy's, a new domain).
      const url = server.url.replace('127.0.0.1', 'localhost');
      const c = client({ url, transport });
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
