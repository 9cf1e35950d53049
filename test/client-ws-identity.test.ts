import { describe, expect, it, vi } from 'vitest';
import NodeWebSocket from 'ws';
import { streamChat } from '../client/index.ts';
import type { StreamEvent } from '../shared/index.ts';
import { startIdentityProvider } from './helpers/identity-provider.ts';
import { chatClient } from './helpers/chat-clients.ts';
import { startServer } from './helpers/server.ts';

function settle<T>(promise: Promise<T>): { outcome: () => string } {
  let outcome = 'pending';
  promise.then(
    () => (outcome = 'resolved'),
    (error: unknown) => (outcome = `rejected: ${(error as Error).message}`),
  );
  return { outcome: () => outcome };
}

/**
 * A WebSocket class that tells when its sockets open: a getToken that answers only once the next
 * socket has opened is a refresh slower than the connection (the credential comes after the open).
 */
function socketOpens() {
  const waiters: Array<() => void> = [];
  class Tracked extends NodeWebSocket {
    constructor(address: string | URL, protocols?: string | string[]) {
      super(address, protocols);
      this.once('open', () => {
        for (const wake of waiters.splice(0)) wake();
      });
    }
  }
  return { WebSocket: Tracked, nextOpen: () => new Promise<void>((resolve) => waiters.push(resolve)) };
}

describe('WebSocket identity check with a getToken that takes a moment (a refresh over the network)', () => {
  it.each(['ws', 'auto'] as const)(
    'over %s, the first call of a client whose getToken answers after the socket has opened is answered',
    async (transport) => {
      const idp = await startIdentityProvider();
      const { url } = await startServer({ AUTH_JWKS_URL: idp.jwksUrl });
      const opens = socketOpens();
      // The connection's credential (the first ask) comes after its socket has opened.
      let asks = 0;
      const getToken = async (): Promise<string> => {
        if (++asks === 1) await opens.nextOpen();
        return idp.token('alice');
      };
      const c = chatClient({ url, transport, WebSocket: opens.WebSocket, getToken });
      const call = settle(c.chat.history.query({ sessionId: 'chat-1' }));
      await vi.waitFor(() => expect(call.outcome()).not.toBe('pending'), { timeout: 5_000, interval: 50 });
      expect(call.outcome()).toBe('resolved');
    },
    20_000,
  );

  it('over ws, the first call after another user signed in is answered (the replacement connection opens while getToken still runs)', async () => {
    const idp = await startIdentityProvider();
    const { url } = await startServer({ AUTH_JWKS_URL: idp.jwksUrl });
    let signedIn = 'alice';
    const opens = socketOpens();
    // Asks past `slowFrom` (the replacement connection's) answer only once its socket has opened.
    let asks = 0;
    let slowFrom = Infinity;
    const getToken = async (): Promise<string> => {
      const user = signedIn;
      if (++asks >= slowFrom) await opens.nextOpen();
      return idp.token(user);
    };
    const c = chatClient({ url, transport: 'ws', WebSocket: opens.WebSocket, getToken });
    await c.chat.history.query({ sessionId: 'chat-1' });
    signedIn = 'bob';
    slowFrom = asks + 2;
    const call = settle(c.chat.history.query({ sessionId: 'chat-1' }));
    await vi.waitFor(() => expect(call.outcome()).not.toBe('pending'), { timeout: 5_000, interval: 50 });
    expect(call.outcome()).toBe('resolved');
  }, 20_000);
});

describe('WebSocket identity check with AUTH_JWT_OWNER_CLAIM (the user is named by a claim other than sub)', () => {
  it("over ws, when bob signs in after alice, bob's calls do not run as alice (tokens share sub, the owner claim differs)", async () => {
    const idp = await startIdentityProvider();
    const { url } = await startServer({ AUTH_JWKS_URL: idp.jwksUrl, AUTH_JWT_OWNER_CLAIM: 'uid' });
    let signedIn = 'alice';
    // A backend-for-frontend's tokens: sub names the app, uid the user (AUTH_JWT_OWNER_CLAIM=uid).
    const c = chatClient({ url, transport: 'ws', getToken: () => idp.token('web-app', { claims: { uid: signedIn } }) });
    const events: StreamEvent[] = [];
    for await (const event of streamChat(c, { message: 'alice private question', sessionId: 'chat-1' })) events.push(event);
    expect(events.at(-1)?.type).toBe('done');

    signedIn = 'bob';
    const bobsView = await c.chat.history.query({ sessionId: 'chat-1' });
    expect(bobsView.messages.map((m) => m.content)).toEqual([]);
  }, 20_000);
});

describe('WebSocket identity check with tokens that do not carry sub', () => {
  it('over ws, a refreshed token of the same user (owner claim uid, no sub) keeps the connection', async () => {
    const idp = await startIdentityProvider();
    const { url } = await startServer({ AUTH_JWKS_URL: idp.jwksUrl, AUTH_JWT_OWNER_CLAIM: 'uid' });
    let opened = 0;
    const { WebSocket } = await import('ws');
    class Counting extends WebSocket {
      constructor(...args: ConstructorParameters<typeof WebSocket>) {
        super(...args);
        opened++;
      }
    }
    // Each getToken gives a refreshed token (a new jti, as providers mint them) of the same user.
    let n = 0;
    const c = chatClient({
      url,
      transport: 'ws',
      WebSocket: Counting,
      getToken: () => idp.token('', { claims: { sub: undefined, uid: 'alice', jti: `t${++n}` } }),
    });
    for (let i = 0; i < 5; i++) await c.chat.history.query({ sessionId: 'chat-1' });
    expect(opened).toBe(1);
  }, 20_000);
});
