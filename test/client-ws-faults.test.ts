import { describe, expect, it, vi } from 'vitest';
import { streamChat } from '../client/index.ts';
import type { StreamEvent } from '../shared/index.ts';
import { chatClient } from './helpers/chat-clients.ts';
import { startServer } from './helpers/server.ts';
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';

/**
 * A TCP proxy whose abandon() cuts the client's side of every connection and leaves the server's
 * side open and silent: the server still holds the connection (as after a phone's network change,
 * or a NAT that forgot it) until its keep-alive gives up on it.
 */
async function startHalfOpenProxy(targetUrl: string): Promise<{ url: string; abandon(): void; close(): void }> {
  const target = new URL(targetUrl);
  const pairs = new Set<[Socket, Socket]>();
  const server = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    client.on('data', (chunk: Buffer) => upstream.write(chunk));
    upstream.on('data', (chunk: Buffer) => client.writable && client.write(chunk));
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
    upstream.on('close', () => client.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    abandon: () => {
      for (const pair of pairs) {
        pairs.delete(pair);
        const [client, upstream] = pair;
        client.removeAllListeners('data');
        upstream.removeAllListeners('data');
        upstream.removeAllListeners('close');
        client.destroy();
      }
    },
    close: () => {
      for (const [client, upstream] of pairs) {
        client.destroy();
        upstream.destroy();
      }
      server.close();
    },
  };
}

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

  it('over ws with MAX_WS_CONNECTIONS_PER_KEY=1, a reply whose connection went half-open resumes once the server lets the dead connection go', async () => {
    // The server notices a dead peer within WS_PING_MS + WS_PONG_WAIT_MS (here 1.5 s); the reply waits for 5 s.
    const server = await startServer({
      API_KEYS: KEY,
      MAX_WS_CONNECTIONS_PER_KEY: 1,
      SIM_DELAY_MS: 40,
      RESUME_GRACE_MS: 5_000,
      WS_PING_MS: 500,
      WS_PONG_WAIT_MS: 1_000,
    });
    const proxy = await startHalfOpenProxy(server.url);
    try {
      const c = chatClient({ url: proxy.url, transport: 'ws', apiKey: KEY });
      const events: StreamEvent[] = [];
      for await (const event of streamChat(c, { message: 'explain caching', sessionId: 's' })) {
        events.push(event);
        if (events.length === 3) proxy.abandon();
      }
      const last = events.at(-1)!;
      expect(last.type === 'error' ? `${last.code}: ${last.message}` : last.type).toBe('done');
    } finally {
      proxy.close();
    }
  }, 30_000);
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
      // A provider SDK's getToken: whose token it is is settled when it is called; a refresh under
      // way at the switch is held until the test lets it (and every ask made meanwhile) answer.
      let hold: Promise<void> | undefined;
      let release: () => void = () => undefined;
      const getToken = async (): Promise<string> => {
        const user = signedIn;
        asked++;
        const token = await idp.token(user);
        if (hold) await hold;
        refreshes++;
        return token;
      };
      const c = chatClient({ url, transport, getToken });
      expect((await collect(streamChat(c, { message: 'alice private question', sessionId: 'chat-1' }))).at(-1)?.type).toBe('done');

      // Alice's page reads her history (its getToken call under way) as she switches to bob's account.
      const before = refreshes;
      const askedBefore = asked;
      hold = new Promise<void>((resolve) => (release = resolve));
      const aliceRead = c.chat.history.query({ sessionId: 'chat-1' });
      await vi.waitFor(() => expect(asked).toBeGreaterThan(askedBefore), { interval: 1 });
      signedIn = 'bob';
      const bobs = collect(streamChat(c, { message: 'bob question', sessionId: 'chat-1' }));
      // Bob's call is made while alice's refresh is still coming; then both answer.
      await vi.waitFor(() => expect(asked).toBeGreaterThan(askedBefore + 1), { interval: 1 });
      hold = undefined;
      release();
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
