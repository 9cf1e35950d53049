import { describe, expect, it, vi } from 'vitest';
import { streamChat } from '../client/index.ts';
import type { StreamEvent } from '../shared/index.ts';
import { chatClient } from './helpers/chat-clients.ts';
import { startServer } from './helpers/server.ts';
import { startTcpProxy } from './helpers/tcp-proxy.ts';
import { startIdentityProvider } from './helpers/identity-provider.ts';

describe('resumed streams after network drops', () => {
  it.each(['ws', 'sse'] as const)(
    'over %s, a reply cut three times delivers every delta once, in order',
    async (transport) => {
      const idp = await startIdentityProvider();
      const server = await startServer({ SIM_DELAY_MS: 15, RESUME_GRACE_MS: 5_000, AUTH_JWKS_URL: idp.jwksUrl });
      const proxy = await startTcpProxy(server.url);
      const c = chatClient({ url: proxy.url, transport, getToken: () => idp.token('alice') });
      const events: StreamEvent[] = [];
      let drops = 0;
      let resumed = 0;
      for await (const event of streamChat(c, { message: 'explain caching', sessionId: 's', onConnection: (s) => s === 'resumed' && resumed++ })) {
        events.push(event);
        if (event.type === 'delta' && events.length % 6 === 0 && drops < 3) {
          drops++;
          proxy.dropAll();
        }
      }
      expect(events.at(-1)?.type).toBe('done');
      const text = events.map((e) => (e.type === 'delta' ? e.delta : '')).join('');
      const history = await c.chat.history.query({ sessionId: 's' });
      expect(text).toBe(history.messages.at(-1)?.content);
      expect(drops).toBe(3);
    },
    30_000,
  );
});

describe('token expiry mid-stream', () => {
  it('over ws, a query made after the token expired while a reply streams is answered, and the reply arrives whole', async () => {
    const idp = await startIdentityProvider();
    const server = await startServer({ SIM_DELAY_MS: 60, RESUME_GRACE_MS: 5_000, AUTH_JWKS_URL: idp.jwksUrl });
    // Tokens past their exp by 29 s of the server's 30 s leeway: each is refused a second or so after it is made.
    const getToken = () => idp.token('alice', { at: Date.now() - 31_000, expiresIn: 2 });
    const c = chatClient({ url: server.url, transport: 'ws', getToken });
    const events: StreamEvent[] = [];
    let query: Promise<unknown> | undefined;
    const started = Date.now();
    for await (const event of streamChat(c, { message: 'explain caching', sessionId: 's' })) {
      events.push(event);
      if (!query && Date.now() - started > 1_500) query = c.chat.history.query({ sessionId: 'other' });
    }
    expect(query).toBeDefined();
    await expect(query).resolves.toBeDefined();
    expect(events.at(-1)?.type).toBe('done');
    const text = events.map((e) => (e.type === 'delta' ? e.delta : '')).join('');
    const history = await c.chat.history.query({ sessionId: 's' });
    expect(text).toBe(history.messages.at(-1)?.content);
  }, 30_000);
});

describe('leaks after many user switches', () => {
  it('over ws, 20 switches with concurrent calls leave one open socket', async () => {
    const idp = await startIdentityProvider();
    const server = await startServer({ AUTH_JWKS_URL: idp.jwksUrl });
    const { WebSocket } = await import('ws');
    const sockets: InstanceType<typeof WebSocket>[] = [];
    class Counting extends WebSocket {
      constructor(...args: ConstructorParameters<typeof WebSocket>) {
        super(...args);
        sockets.push(this);
      }
    }
    let signedIn = 'alice';
    const c = chatClient({ url: server.url, transport: 'ws', WebSocket: Counting, getToken: () => idp.token(signedIn) });
    for (let i = 0; i < 20; i++) {
      signedIn = i % 2 ? 'alice' : 'bob';
      const views = await Promise.all([0, 1, 2, 3].map((n) => c.chat.history.query({ sessionId: `s${n}` })));
      expect(views).toHaveLength(4);
    }
    await vi.waitFor(() => expect(sockets.filter((s) => s.readyState !== s.CLOSED).length).toBe(1), { timeout: 5_000 });
    expect(sockets.length).toBeLessThanOrEqual(21);
  }, 30_000);
});

describe('refreshed tokens of the same user from real providers', () => {
  it.each([
    ['Clerk (fva: minutes since the factors were verified)', (n: number) => ({ sid: 'sess_1', azp: 'https://app.example', fva: [n, -1] })],
    ['Microsoft Entra ID (aio: opaque, new in each token)', (n: number) => ({ oid: 'o-1', tid: 't-1', aio: `AWQAm/8T${n}` })],
  ])(
    'over ws, a refreshed %s token keeps the connection, and a reply streaming meanwhile is not cut',
    async (_name, claims) => {
      const idp = await startIdentityProvider();
      const server = await startServer({ AUTH_JWKS_URL: idp.jwksUrl, SIM_DELAY_MS: 20, RESUME_GRACE_MS: 5_000 });
      const { WebSocket } = await import('ws');
      let opened = 0;
      class Counting extends WebSocket {
        constructor(...args: ConstructorParameters<typeof WebSocket>) {
          super(...args);
          opened++;
        }
      }
      let n = 0;
      // Each getToken call is a refreshed token (the SDK's cache renewed it): same user, same session.
      const c = chatClient({ url: server.url, transport: 'ws', WebSocket: Counting, getToken: () => idp.token('user_2abc', { claims: claims(++n) }) });
      const events: StreamEvent[] = [];
      let lost = 0;
      for await (const event of streamChat(c, { message: 'hi', sessionId: 's', onConnection: (s) => s === 'lost' && lost++ })) {
        events.push(event);
        // The page reads another chat's history while the reply streams.
        if (events.length === 3) await c.chat.history.query({ sessionId: 'other' });
      }
      const last = events.at(-1)!;
      expect({ last: last.type === 'error' ? `${last.code}: ${last.message}` : last.type, lost, opened }).toEqual({ last: 'done', lost: 0, opened: 1 });
    },
    30_000,
  );
});
