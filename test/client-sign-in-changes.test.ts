import { describe, expect, it, vi } from 'vitest';
import { streamChat } from '../client/index.ts';
import { startIdentityProvider } from './helpers/identity-provider.ts';
import { chatClient, collect } from './helpers/chat-clients.ts';
import { startServer } from './helpers/server.ts';

// The README's React section: "the client is your app's, made once", with
// `getToken: () => auth.currentToken()`. In a single-page app the signed-in user changes under it.
describe('an app whose users sign out and in, with one client made once', () => {
  it.each(['ws', 'sse'] as const)('over %s, after the user signs out (getToken gives nothing), calls no longer run as that user', async (transport) => {
    const idp = await startIdentityProvider();
    const { url } = await startServer({ AUTH_JWKS_URL: idp.jwksUrl });
    let signedIn: string | undefined = 'alice';
    const c = chatClient({ url, transport, getToken: async () => (signedIn ? idp.token(signedIn) : undefined) });
    expect((await collect(streamChat(c, { message: 'alice private question', sessionId: 'chat-1' }))).at(-1)?.type).toBe('done');

    signedIn = undefined;
    await expect(c.chat.history.query({ sessionId: 'chat-1' })).rejects.toMatchObject({ data: { code: 'UNAUTHORIZED' } });
  });

  it.each(['ws', 'sse'] as const)(
    "over %s, when another user signs in, their calls run as them: they neither read nor write the previous user's sessions",
    async (transport) => {
      const idp = await startIdentityProvider();
      const { url } = await startServer({ AUTH_JWKS_URL: idp.jwksUrl });
      let signedIn = 'alice';
      const c = chatClient({ url, transport, getToken: async () => idp.token(signedIn) });
      expect((await collect(streamChat(c, { message: 'alice private question', sessionId: 'chat-1' }))).at(-1)?.type).toBe('done');

      // Bob signs in on the same page (alice signed out, or an account switcher).
      signedIn = 'bob';
      expect((await collect(streamChat(c, { message: 'bob question', sessionId: 'chat-1' }))).at(-1)?.type).toBe('done');
      const bobsView = await c.chat.history.query({ sessionId: 'chat-1' });
      expect(bobsView.messages.map((m) => m.content).filter((_, i) => i % 2 === 0)).toEqual(['bob question']);

      // Seen by alice's own fresh client, her session holds only her turn.
      const alice = chatClient({ url, transport, getToken: async () => idp.token('alice') });
      const alicesView = await alice.chat.history.query({ sessionId: 'chat-1' });
      expect(alicesView.messages.map((m) => m.content).filter((_, i) => i % 2 === 0)).toEqual(['alice private question']);
    },
  );
});

describe('a getToken that throws (the refresh failed: the session at the identity provider ended)', () => {
  it.each(['ws', 'auto', 'sse'] as const)(
    "over %s, a call fails soon with getToken's error, as it does over SSE, instead of waiting forever",
    async (transport) => {
      const idp = await startIdentityProvider();
      const { url } = await startServer({ AUTH_JWKS_URL: idp.jwksUrl });
      const c = chatClient({
        url,
        transport,
        getToken: async () => {
          throw new Error('login_required: refresh failed');
        },
      });
      let outcome = 'pending';
      c.chat.history.query({ sessionId: 'x' }).then(
        () => (outcome = 'resolved'),
        (error: unknown) => (outcome = `rejected: ${(error as Error).message}`),
      );
      // Over SSE it is at once; ten seconds is getToken's own default time limit (tokenTimeoutMs).
      await vi.waitFor(() => expect(outcome).not.toBe('pending'), { timeout: 10_000, interval: 50 });
      expect(outcome).toBe('rejected: login_required: refresh failed');

      // A reply: refused with the same cause, not "the server could not be reached" after giveUpAfterMs.
      const refused = await collect(streamChat(c, { message: 'hi', sessionId: 'x', giveUpAfterMs: 10_000 })).then(
        () => 'no error',
        (error: unknown) => (error as Error).message,
      );
      expect(refused).toBe('login_required: refresh failed');
    },
    40_000,
  );
});
