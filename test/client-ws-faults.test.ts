import { describe, expect, it, vi } from 'vitest';
import { streamChat } from '../client/index.ts';
import type { StreamEvent } from '../shared/index.ts';
import { chatClient } from './helpers/chat-clients.ts';
import { startServer } from './helpers/server.ts';

const KEY = 'k-alice-0123456789';

describe('ws-refusals: a refused replacement connection while the old one still serves', () => {
  it.each([1, 2])(
    'over ws with MAX_WS_CONNECTIONS_PER_KEY=%i, a reply streaming when the server starts draining (SIGTERM) finishes on its connection',
    async (limit) => {
      const server = await startServer({ API_KEYS: KEY, MAX_WS_CONNECTIONS_PER_KEY: limit, SIM_DELAY_MS: 40, SHUTDOWN_DRAIN_MS: 10_000 });
      const c = chatClient({ url: server.url, transport: 'ws', apiKey: KEY });
      const events: StreamEvent[] = [];
      let draining: Promise<void> | undefined;
      for await (const event of streamChat(c, { message: 'explain caching', sessionId: 's' })) {
        events.push(event);
        // The operator restarts the server (a rolling deploy): running replies may finish within SHUTDOWN_DRAIN_MS.
        if (event.type === 'delta' && !draining) draining = server.sluice.shutdown();
      }
      await draining;
      const last = events.at(-1)!;
      expect(last.type === 'error' ? `${last.code}: ${last.message}` : last.type).toBe('done');
    },
    30_000,
  );
});

describe('ws-identity: a call made just after a user switch, while a token asked for before it is still coming', () => {
  it.each(['ws', 'auto'] as const)(
    "over %s, bob's first message after the switch is not written into alice's session",
    async (transport) => {
      const { startIdentityProvider } = await import('./helpers/identity-provider.ts');
      const { collect } = await import('./helpers/chat-clients.ts');
      const idp = await startIdentityProvider();
      const { url } = await startServer({ AUTH_JWKS_URL: idp.jwksUrl });
      let signedIn = 'alice';
      let refreshes = 0;
      let asked = 0;
      // A provider SDK's getToken: whose token it is is settled when it is called; the refresh takes a moment.
      const getToken = async (): Promise<string> => {
        const user = signedIn;
        asked++;
        const token = await idp.token(user);
        await new Promise<void>((resolve) => setTimeout(resolve, 200));
        refreshes++;
        return token;
      };
      const c = chatClient({ url, transport, getToken });
      expect((await collect(streamChat(c, { message: 'alice private question', sessionId: 'chat-1' }))).at(-1)?.type).toBe('done');

      // Alice's page reads her history (its getToken call under way) as she switches to bob's account.
      const before = refreshes;
      const askedBefore = asked;
      const aliceRead = c.chat.history.query({ sessionId: 'chat-1' });
      await vi.waitFor(() => expect(asked).toBeGreaterThan(askedBefore), { interval: 1 });
      signedIn = 'bob';
      const bobs = collect(streamChat(c, { message: 'bob question', sessionId: 'chat-1' }));
      // Alice's read may be cut with her connection (she has signed out); Bob's reply comes whole.
      await aliceRead.catch(() => undefined);
      expect((await bobs).at(-1)?.type).toBe('done');
      expect(refreshes).toBeGreaterThan(before);

      const alice = chatClient({ url, transport, getToken: () => idp.token('alice') });
      const alicesView = await alice.chat.history.query({ sessionId: 'chat-1' });
      expect(alicesView.messages.filter((m) => m.role === 'user').map((m) => m.content)).toEqual(['alice private question']);
    },
    30_000,
  );
});
