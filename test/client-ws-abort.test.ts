import { describe, expect, it, vi } from 'vitest';
import { startIdentityProvider } from './helpers/identity-provider.ts';
import { chatClient } from './helpers/chat-clients.ts';
import { startServer } from './helpers/server.ts';

describe('review: a call aborted while it waits for a connection opened for the user signed in now', () => {
  it.each(['ws', 'auto'] as const)(
    'over %s, a query aborted while the server is unreachable settles at once, as it does with a stock wsLink (it does not wait for the server to come back)',
    async (transport) => {
      const idp = await startIdentityProvider();
      const server = await startServer({ AUTH_JWKS_URL: idp.jwksUrl });
      const c = chatClient({ url: server.url, transport, getToken: () => idp.token('alice') });
      await c.chat.history.query({ sessionId: 's' });
      // The server goes away (a network change, a long outage): the client reconnects, with backoff, for ever.
      await server.close();

      // A page that gives up on a read (a React Query cancel, a route change).
      const controller = new AbortController();
      let outcome = 'pending';
      c.chat.history.query({ sessionId: 's' }, { signal: controller.signal }).then(
        () => (outcome = 'resolved'),
        (error: Error) => (outcome = `rejected: ${error.message}`),
      );
      controller.abort();
      await vi.waitFor(() => expect(outcome).not.toBe('pending'), { timeout: 3_000, interval: 20 });
      expect(outcome).toMatch(/^rejected/);
    },
    20_000,
  );
});
