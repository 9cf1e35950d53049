import { describe, expect, it, vi } from 'vitest';
import { streamChat } from '../client/index.ts';
import type { StreamEvent } from '../shared/index.ts';
import { startIdentityProvider } from './helpers/identity-provider.ts';
import { chatClient } from './helpers/chat-clients.ts';
import { startServer } from './helpers/server.ts';

describe('review: a call whose token was asked for before the switch, answered after it', () => {
  it("over ws, alice's late read does not cut bob's reply (it does not replace bob's connection by alice's)", async () => {
    const idp = await startIdentityProvider();
    const { url } = await startServer({ AUTH_JWKS_URL: idp.jwksUrl, SIM_DELAY_MS: 20 });
    let signedIn = 'alice';
    // Alice's last refresh is held on the network until the test lets it go.
    let release: (() => void) | undefined;
    let holdNext = false;
    const getToken = async (): Promise<string> => {
      const user = signedIn;
      if (holdNext) {
        holdNext = false;
        await new Promise<void>((resolve) => (release = resolve));
      }
      return idp.token(user);
    };
    const c = chatClient({ url, transport: 'ws', getToken });
    await c.chat.history.query({ sessionId: 'alice-chat' });

    holdNext = true;
    const aliceRead = c.chat.history.query({ sessionId: 'alice-chat' }).then(
      () => 'resolved',
      (error: Error) => `rejected: ${error.message}`,
    );
    await vi.waitFor(() => expect(release).toBeDefined(), { interval: 5 });
    signedIn = 'bob';

    const events: StreamEvent[] = [];
    const lost: string[] = [];
    const bobs = (async () => {
      for await (const event of streamChat(c, { message: 'bob question', sessionId: 'bob-chat', onConnection: (s) => lost.push(s) })) {
        events.push(event);
      }
    })();
    // Bob's reply is streaming on bob's connection...
    await vi.waitFor(() => expect(events.filter((e) => e.type === 'delta').length).toBeGreaterThan(2), { timeout: 10_000, interval: 5 });
    // ...when alice's held refresh comes back.
    release!();
    await aliceRead;
    await bobs;
    const last = events.at(-1)!;
    expect({ last: last.type === 'error' ? `${last.code}: ${last.message}` : last.type, connection: lost }).toEqual({ last: 'done', connection: [] });
  }, 30_000);
});
