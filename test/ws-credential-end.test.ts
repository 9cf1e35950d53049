import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTRPCClient, createWSClient, wsLink, type TRPCClient } from '@trpc/client';
import superjson from 'superjson';
import { afterEach, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { closeChatClient, createChatClient, streamChat, type ChatClient } from '../client/index.ts';
import { ApiKeys } from '../server/core/api-keys.ts';
import { AnyCredential } from '../server/core/auth/any-credential.ts';
import { JwtVerifier } from '../server/core/auth/jwt-verifier.ts';
import { simulatedDeltas } from '../server/core/providers/simulated.ts';
import type { AppRouter } from '../server/router-type.ts';
import type { StreamEvent } from '../shared/index.ts';
import { startIdentityProvider, type IdentityProvider } from './helpers/identity-provider.ts';
import { startRedis } from './helpers/redis.ts';
import { expectTimersBackTo, startServer, timerCount } from './helpers/server.ts';
import { collectStream } from './helpers/trpc-clients.ts';

// A WebSocket shows its credential once, when it opens. When that credential ends (a token's
// `exp` passes, a key is removed from API_KEYS_FILE), the connection stops counting as signed in:
// its slot of MAX_WS_CONNECTIONS_PER_KEY is let go at once, it is told to reconnect (tRPC's
// reconnect notification: stock clients open a new connection with fresh connectionParams) once
// the replies it carries are over, and it is closed if it has not gone WS_AUTH_TIMEOUT_MS later.

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

/** Past a token's `exp` (60 s) and the verifier's 30 s of leeway. */
const PAST_EXPIRY_MS = 2 * 60_000;

/** The operator's key, for /metrics (end users' tokens cannot read it). */
const OPERATOR_KEY = 'k-operator-0123456789';

/** Users' tokens, verified by a clock the test moves, and the operator's key. */
function tokensWithClock(idp: IdentityProvider, clock: { now: number }) {
  return new AnyCredential([new ApiKeys({ list: OPERATOR_KEY }), new JwtVerifier({ keys: { jwksUrl: new URL(idp.jwksUrl) }, now: () => clock.now })]);
}

/** A server whose verifier reads a clock the test moves, and the identity provider signing for it. */
async function serverWithClock(settings: Parameters<typeof startServer>[0] = {}) {
  const idp = await startIdentityProvider();
  const clock = { now: Date.now() };
  const server = await startServer(settings, { credentials: tokensWithClock(idp, clock) });
  return { idp, clock, server };
}

const tokenAt = (idp: IdentityProvider, clock: { now: number }, sub = 'alice') => idp.token(sub, { at: clock.now, expiresIn: 60 });

/** A stock wsLink client whose connectionParams is a function: asked again for each connection. */
function stockClient(url: string, connectionParams: () => Promise<{ token: string } | { apiKey: string }>) {
  let opens = 0;
  const wsClient = createWSClient({ url: `${url.replace('http:', 'ws:')}/trpc`, WebSocket: WebSocket as never, connectionParams, onOpen: () => opens++ });
  closers.push(() => wsClient.close());
  const client: TRPCClient<AppRouter> = createTRPCClient<AppRouter>({ links: [wsLink({ client: wsClient, transformer: superjson })] });
  return { client, wsClient, opens: () => opens };
}

interface Raw {
  readonly ws: WebSocket;
  readonly messages: Array<{ id: unknown; method?: string; result?: { data?: { json?: unknown } }; error?: { json: { data: { code: string } } } }>;
  readonly closed: Promise<number>;
}

/** A WebSocket of the test's own, to see each frame the server sends and how it closes. */
async function raw(url: string, params: Record<string, string>): Promise<Raw> {
  const ws = new WebSocket(`${url.replace('http:', 'ws:')}/trpc?connectionParams=1`);
  const messages: Raw['messages'] = [];
  ws.on('message', (data) => messages.push(JSON.parse(String(data))));
  const closed = once(ws, 'close').then(([code]) => code as number);
  await once(ws, 'open');
  ws.send(JSON.stringify({ method: 'connectionParams', data: params }));
  return { ws, messages, closed };
}

const health = (id: number) => JSON.stringify({ id, method: 'query', params: { path: 'health', input: { json: null } } });
const historyCall = (id: number) => JSON.stringify({ id, method: 'query', params: { path: 'chat.history', input: { json: { sessionId: 's' } } } });

async function reply(connection: Raw, id: number): Promise<Raw['messages'][number]> {
  await vi.waitFor(() => expect(connection.messages.some((m) => m.id === id)).toBe(true));
  return connection.messages.find((m) => m.id === id)!;
}

async function openWebSockets(url: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${OPERATOR_KEY}` } })).text();
  const counts: Record<string, number> = {};
  for (const [, transport, value] of text.matchAll(/^sluice_open_connections\{transport="(ws[^"]*)"\} (\d+)$/gm)) counts[transport!] = Number(value);
  return counts;
}

describe('a WebSocket whose token expires', () => {
  it('is told to reconnect: a stock wsLink opens a new connection with a fresh token and lets the old one go, within MAX_WS_CONNECTIONS_PER_KEY=1', async () => {
    const { idp, clock, server } = await serverWithClock({ MAX_WS_CONNECTIONS_PER_KEY: 1 });
    let tokens = 0;
    const { client, wsClient, opens } = stockClient(server.url, async () => (tokens++, { token: await tokenAt(idp, clock) }));
    expect((await client.chat.history.query({ sessionId: 's' })).messages).toEqual([]);
    const first = wsClient.connection!.ws;

    clock.now += PAST_EXPIRY_MS;
    // The new connection takes the key's only slot, which the old one let go when its token expired.
    await vi.waitFor(() => expect(first.readyState).toBe(WebSocket.CLOSED), { timeout: 5_000 });
    expect(opens()).toBe(2);
    expect(tokens).toBe(2);
    expect(wsClient.connection?.ws).not.toBe(first);
    expect((await client.chat.history.query({ sessionId: 's' })).messages).toEqual([]);
    await vi.waitFor(async () => expect(await openWebSockets(server.url)).toEqual({ ws: 1, ws_unauthenticated: 0 }));
  });

  it('carries its running reply to the end, then is replaced: the typed client with getToken never sees a refusal or a drop', async () => {
    const { idp, clock, server } = await serverWithClock({ SIM_DELAY_MS: 10, MAX_WS_CONNECTIONS_PER_KEY: 1 });
    let tokens = 0;
    let opens = 0;
    const disconnects: string[] = [];
    const c: ChatClient = createChatClient({
      url: server.url,
      transport: 'ws',
      WebSocket,
      getToken: async () => (tokens++, tokenAt(idp, clock)),
      onTransport: () => opens++,
      onDisconnect: () => disconnects.push('lost'),
    });
    closers.push(() => closeChatClient(c));
    const events: StreamEvent[] = [];
    const connections: string[] = [];
    // About 330 deltas at 10 ms: the reply outlasts the server's look at expiries (once a second).
    const message = 'word '.repeat(300).trim();
    for await (const event of streamChat(c, { message, sessionId: 'x', onConnection: (state) => connections.push(state) })) {
      events.push(event);
      if (events.length !== 2) continue;
      // The token expires while the reply streams: the connection no longer counts as signed in.
      clock.now += PAST_EXPIRY_MS;
      await vi.waitFor(async () => expect(await openWebSockets(server.url)).toEqual({ ws: 0, ws_unauthenticated: 1 }), { timeout: 5_000 });
    }
    expect(events.at(-1)?.type).toBe('done');
    expect(events.map((e) => (e.type === 'delta' ? e.delta : '')).join('')).toBe(simulatedDeltas(message).join(''));
    expect(connections).toEqual([]);
    // Once the reply is over, the connection is replaced by one with a fresh token.
    await vi.waitFor(() => expect(opens).toBe(2), { timeout: 5_000 });
    expect(tokens).toBe(2);
    await vi.waitFor(async () => expect(await openWebSockets(server.url)).toEqual({ ws: 1, ws_unauthenticated: 0 }));
    expect((await c.chat.history.query({ sessionId: 'x' })).messages.map((m) => m.status)).toEqual(['complete', 'complete']);
    // One token a connection, and one for the history call (each call over WebSocket asks who is
    // signed in now): no call was refused and retried with a new one.
    expect(tokens).toBe(3);
    expect(disconnects).toEqual([]);
  });

  it('with no fresh token: its slot is let go at once, it is told to reconnect, then refused (UNAUTHORIZED, 1008); no timer is left', async () => {
    const { idp, clock, server } = await serverWithClock({ MAX_WS_CONNECTIONS_PER_KEY: 1, WS_AUTH_TIMEOUT_MS: 300 });
    const baseline = timerCount();
    const stale = await raw(server.url, { token: await tokenAt(idp, clock) });
    stale.ws.send(health(1));
    expect((await reply(stale, 1)).result?.data?.json).toEqual({ status: 'ok' });
    // The key's one slot is taken.
    const refused = await raw(server.url, { token: await tokenAt(idp, clock) });
    refused.ws.send(health(1));
    expect((await reply(refused, 1)).error?.json.data.code).toBe('TOO_MANY_REQUESTS');
    await refused.closed;

    clock.now += PAST_EXPIRY_MS;
    await vi.waitFor(() => expect(stale.messages.some((m) => m.id === null && m.method === 'reconnect')).toBe(true), { timeout: 5_000 });
    // The slot is free for a connection with a fresh token while the stale one is still open.
    expect(stale.ws.readyState).toBe(WebSocket.OPEN);
    const fresh = await raw(server.url, { token: await tokenAt(idp, clock) });
    fresh.ws.send(health(1));
    expect((await reply(fresh, 1)).result?.data?.json).toEqual({ status: 'ok' });
    // The stale one's calls are refused; it is closed as a connection without a credential is.
    stale.ws.send(historyCall(2));
    expect((await reply(stale, 2)).error?.json.data.code).toBe('UNAUTHORIZED');
    expect(await stale.closed).toBe(1008);
    // The same words as every other refused credential: an ended one is not told apart.
    expect(stale.messages.at(-1)).toMatchObject({
      id: null,
      error: { json: { message: 'A valid API key or token is required', data: { code: 'UNAUTHORIZED' } } },
    });
    expect(await openWebSockets(server.url)).toEqual({ ws: 1, ws_unauthenticated: 0 });
    fresh.ws.close();
    await fresh.closed;
    await expectTimersBackTo(baseline);
  });

  it('with Redis, the slot it lets go is free on every instance', async () => {
    const redis = await startRedis();
    if (!redis) return;
    const idp = await startIdentityProvider();
    const clock = { now: Date.now() };
    const credentials = tokensWithClock(idp, clock);
    const settings = { MAX_WS_CONNECTIONS_PER_KEY: 1, REDIS_URL: redis.url, WS_AUTH_TIMEOUT_MS: 300 };
    const a = await startServer(settings, { credentials });
    const b = await startServer(settings, { credentials });
    const stale = await raw(a.url, { token: await tokenAt(idp, clock) });
    stale.ws.send(health(1));
    expect((await reply(stale, 1)).result?.data?.json).toEqual({ status: 'ok' });
    const elsewhere = await raw(b.url, { token: await tokenAt(idp, clock) });
    elsewhere.ws.send(health(1));
    expect((await reply(elsewhere, 1)).error?.json.data.code).toBe('TOO_MANY_REQUESTS');

    clock.now += PAST_EXPIRY_MS;
    await vi.waitFor(() => expect(stale.messages.some((m) => m.method === 'reconnect')).toBe(true), { timeout: 5_000 });
    const fresh = await raw(b.url, { token: await tokenAt(idp, clock) });
    fresh.ws.send(health(1));
    expect((await reply(fresh, 1)).result?.data?.json).toEqual({ status: 'ok' });
    expect(await stale.closed).toBe(1008);
    fresh.ws.close();
    await fresh.closed;
  });
});

describe('a WebSocket whose API key is removed from API_KEYS_FILE (SIGHUP)', () => {
  const OLD_KEY = 'old-key-0123456789abcdef';
  const NEW_KEY = 'new-key-0123456789abcdef';

  it('finishes its running reply, is told to reconnect, and is closed; its slot is free, other keys are untouched', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'sluice-keys-')), 'keys.txt');
    writeFileSync(file, `${OLD_KEY}\n${NEW_KEY}\n`);
    const server = await startServer({ API_KEYS_FILE: file, SIM_DELAY_MS: 10, WS_AUTH_TIMEOUT_MS: 300, MAX_WS_CONNECTIONS_PER_KEY: 1 });
    const revoked = stockClient(server.url, async () => ({ apiKey: OLD_KEY }));
    const kept = await raw(server.url, { apiKey: NEW_KEY });
    kept.ws.send(health(1));
    expect((await reply(kept, 1)).result?.data?.json).toEqual({ status: 'ok' });

    expect(await revoked.client.health.query()).toEqual({ status: 'ok' });
    const first = revoked.wsClient.connection!.ws;
    let reloaded = false;
    const collected = collectStream(revoked.client, { message: 'explain caching', sessionId: 'r' }, () => {
      if (reloaded) return;
      reloaded = true;
      writeFileSync(file, `${NEW_KEY}\n`);
      server.sluice.reloadKeys();
    });
    // The reply that ran when the key went goes on to its end.
    const { events } = await collected;
    expect(reloaded).toBe(true);
    expect(events.at(-1)).toMatchObject({ type: 'done', totalChunks: 39 });
    // Then the connection goes (the client, told to reconnect, opens one that the server refuses).
    await vi.waitFor(() => expect(first.readyState).toBe(WebSocket.CLOSED), { timeout: 5_000 });
    await expect(revoked.client.chat.history.query({ sessionId: 'r' })).rejects.toMatchObject({ data: { code: 'UNAUTHORIZED' } });
    // The other key's connection is still there.
    kept.ws.send(health(2));
    expect((await reply(kept, 2)).result?.data?.json).toEqual({ status: 'ok' });
    expect(kept.messages.some((m) => m.method === 'reconnect')).toBe(false);
    kept.ws.close();
    await kept.closed;
  });
});
