import { afterEach, describe, expect, it, vi } from 'vitest';
import { TRPCClientError } from '@trpc/client';
import { chatClientTransport, closeChatClient, createChatClient, streamChat, type ChatClient } from '../client/index.ts';
import { JwtVerifier } from '../server/core/auth/jwt-verifier.ts';
import { createSimulatedProvider, simulatedDeltas } from '../server/core/providers/simulated.ts';
import type { StreamEvent } from '../shared/index.ts';
import type { AppRouter } from '../shared/app-router.ts';
import { startIdentityProvider } from './helpers/identity-provider.ts';
import { recordingProvider } from './helpers/recording-provider.ts';
import { startServer } from './helpers/server.ts';
import { startTcpProxy } from './helpers/tcp-proxy.ts';
import { refusedBaseURL } from './helpers/fake-upstream.ts';
import { startSluiceProcess } from './helpers/process.ts';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import NodeWebSocket from 'ws';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const clients: ChatClient[] = [];
function client(options: Parameters<typeof createChatClient>[0]): ChatClient {
  const c = createChatClient(options);
  clients.push(c);
  return c;
}
afterEach(async () => {
  for (const c of clients.splice(0)) await closeChatClient(c);
});

async function collect(iterable: AsyncIterable<StreamEvent>): Promise<StreamEvent[]> {
  const events: StreamEvent[] = [];
  for await (const event of iterable) events.push(event);
  return events;
}

describe('createChatClient', () => {
  it.each(['ws', 'sse', 'auto'] as const)('streams a reply with transport %s', async (transport) => {
    const { url } = await startServer();
    const c = client({ url, transport });
    const events = await collect(streamChat(c, { message: 'explain caching', sessionId: 't' }));
    expect(
      events
        .filter((e) => e.type === 'delta')
        .map((e) => (e.type === 'delta' ? e.delta : ''))
        .join(''),
    ).toBe(simulatedDeltas('explain caching').join(''));
    expect(events.at(-1)).toEqual({ type: 'done', totalChunks: 39, usage: expect.objectContaining({ estimated: true }) });
    expect(chatClientTransport(c)).toBe(transport === 'auto' ? 'ws' : transport);
    const history = await c.chat.history.query({ sessionId: 't' });
    expect(history.messages).toHaveLength(2);
  });

  it("over WebSocket keeps each message within the server's batch limit: 17 calls at once, and 16 streams resumed after a cut", async () => {
    const server = await startServer({ SIM_DELAY_MS: 20, RESUME_GRACE_MS: 30_000 });
    const proxy = await startTcpProxy(server.url);
    const c = client({ url: proxy.url, transport: 'ws' });
    // tRPC's wsClient sends what was asked in one tick as one message (WS_MAX_BATCH: 16 calls).
    const pages = await Promise.all(Array.from({ length: 17 }, (_, i) => c.chat.history.query({ sessionId: `q${i}` })));
    expect(pages.map((p) => p.messages)).toEqual(Array.from({ length: 17 }, () => []));

    // Started in one tick, and sent again together when the client reconnects.
    const counts = Array.from({ length: 16 }, () => 0);
    const streams = counts.map(async (_, i) => {
      const events: StreamEvent[] = [];
      for await (const event of streamChat(c, { message: 'explain caching', sessionId: `s${i}` })) {
        events.push(event);
        counts[i]!++;
      }
      return events;
    });
    await vi.waitFor(() => expect(Math.min(...counts)).toBeGreaterThanOrEqual(2));
    proxy.dropAll();
    for (const events of await Promise.all(streams)) {
      expect(events.at(-1)).toMatchObject({ type: 'done', totalChunks: 39 });
      expect(events.map((e) => (e.type === 'delta' ? e.delta : '')).join('')).toBe(simulatedDeltas('explain caching').join(''));
    }
  });

  it("'auto' falls back to SSE by itself when the server refuses WebSocket upgrades", async () => {
    const { url } = await startServer({ WS_ENABLED: false });
    const seen: string[] = [];
    const c = client({ url, transport: 'auto', onTransport: (t) => seen.push(t) });
    const events = await collect(streamChat(c, { message: 'hello', sessionId: 'fb' }));
    expect(events.at(-1)).toMatchObject({ type: 'done', totalChunks: simulatedDeltas('hello').length });
    expect(chatClientTransport(c)).toBe('sse');
    expect(seen).toEqual(['sse']);
    expect((await c.chat.history.query({ sessionId: 'fb' })).messages).toHaveLength(2);
  });

  it.each(['ws', 'sse'] as const)('aborting streamChat over %s stops the generation on the server', async (transport) => {
    const recorder = recordingProvider(createSimulatedProvider({ delayMs: 20 }));
    // A long resume window: the stop must come from the client's cancel, not from the window.
    const server = await startServer({ RESUME_GRACE_MS: 60_000 }, { provider: recorder.provider });
    const c = client({ url: server.url, transport });
    const controller = new AbortController();
    const received: StreamEvent[] = [];
    for await (const event of streamChat(c, { message: 'stop me', sessionId: 'ab', signal: controller.signal })) {
      received.push(event);
      if (received.length === 2) controller.abort();
    }
    expect(received).toHaveLength(2);
    await vi.waitFor(() => expect(recorder.calls[0]?.settled).toBe(true));
    expect(recorder.calls[0]!.aborted).toBe(true);
    await vi.waitFor(() => expect(server.sluice.service.runningCount).toBe(0));
    const history = await c.chat.history.query({ sessionId: 'ab' });
    expect(history.messages[1]).toMatchObject({ role: 'assistant', status: 'interrupted' });
  });

  it.each(['ws', 'sse'] as const)(
    "over %s, aborting before its own reply started cancels nobody else's: the session's running reply goes on",
    async (transport) => {
      const server = await startServer({ SIM_DELAY_MS: 20, RESUME_GRACE_MS: 60_000 });
      const a = client({ url: server.url, transport });
      const b = client({ url: server.url, transport });
      await b.health.query(); // connected, so that its call goes out at once
      const first = streamChat(a, { message: 'keep going', sessionId: 'shared' });
      const aEvents: StreamEvent[] = [(await first.next()).value as StreamEvent];
      const controller = new AbortController();
      const second = streamChat(b, { message: 'never mind', sessionId: 'shared', signal: controller.signal });
      const bDone = collect(second).catch((error: unknown) => error);
      queueMicrotask(() => controller.abort());
      await bDone;
      for await (const event of first) aEvents.push(event);
      expect(aEvents.at(-1)).toMatchObject({ type: 'done' });
      const history = await a.chat.history.query({ sessionId: 'shared' });
      expect(history.messages.map((m) => [m.content, m.status])).toEqual([
        ['keep going', 'complete'],
        [expect.any(String), 'complete'],
      ]);
    },
  );

  it.each(['ws', 'sse'] as const)(
    'over %s, a reply its server lost (a crash, then a restart) ends as interrupted with its text so far, not as a refusal',
    async (transport) => {
      const dataDir = mkdtempSync(join(tmpdir(), 'sluice-client-crash-'));
      const first = await startSluiceProcess({ DATA_DIR: dataDir, SIM_DELAY_MS: 50, STORE: 'sqlite' });
      const port = new URL(first.url).port;
      const c = client({ url: first.url, transport });
      const events: StreamEvent[] = [];
      let second: Awaited<ReturnType<typeof startSluiceProcess>> | undefined;
      try {
        for await (const event of streamChat(c, { message: 'explain caching', sessionId: 'crash' })) {
          events.push(event);
          if (events.length === 3) {
            await first.stop('SIGKILL');
            second = await startSluiceProcess({ DATA_DIR: dataDir, SIM_DELAY_MS: 50, STORE: 'sqlite', PORT: port });
          }
        }
        const text = events.map((e) => (e.type === 'delta' ? e.delta : '')).join('');
        expect(events.at(-1)).toEqual({ type: 'error', code: 'interrupted', message: expect.any(String), partial: text });
        expect((await c.chat.history.query({ sessionId: 'crash' })).messages.map((m) => [m.role, m.status])).toEqual([
          ['user', 'complete'],
          ['assistant', 'interrupted'],
        ]);
      } finally {
        await second?.stop('SIGTERM');
        rmSync(dataDir, { recursive: true, force: true });
      }
    },
  );

  it.each(['ws', 'sse'] as const)(
    'over %s, a reply whose server is gone for good ends as unavailable with its text so far once the connection stays lost for giveUpAfterMs',
    async (transport) => {
      const server = await startSluiceProcess({ SIM_DELAY_MS: 50 });
      const c = client({ url: server.url, transport });
      const events: StreamEvent[] = [];
      let lostAt = 0;
      for await (const event of streamChat(c, {
        message: 'explain caching',
        sessionId: 'gone',
        giveUpAfterMs: 1500,
        onConnection: (state) => state === 'lost' && (lostAt = performance.now()),
      })) {
        events.push(event);
        if (events.length === 3) await server.stop('SIGKILL');
      }
      const waited = performance.now() - lostAt;
      const text = events.map((e) => (e.type === 'delta' ? e.delta : '')).join('');
      expect(events.at(-1)).toEqual({ type: 'error', code: 'unavailable', message: expect.stringMatching(/stayed lost/), partial: text });
      expect(lostAt).toBeGreaterThan(0);
      expect(waited).toBeGreaterThanOrEqual(1400);
      expect(waited).toBeLessThan(5000);
    },
  );

  it('a message too long for a URL is refused by the client before it goes over SSE, naming why; WebSocket takes it', async () => {
    const { url } = await startServer({ SIM_DELAY_MS: 0 });
    const message = 'long words '.repeat(2000);
    const overSse = client({ url, transport: 'sse' });
    const refusal = await collect(streamChat(overSse, { message, sessionId: 'long-sse' })).catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(TRPCClientError);
    expect((refusal as Error).message).toMatch(/too long to send over SSE/);
    // Read as the server's refusals are: the same data, with its sluiceCode.
    expect((refusal as TRPCClientError<AppRouter>).data).toMatchObject({ code: 'BAD_REQUEST', httpStatus: 400, sluiceCode: 'invalid_request' });
    expect((await overSse.chat.history.query({ sessionId: 'long-sse' })).messages).toEqual([]);
    const overWs = client({ url, transport: 'ws' });
    expect((await collect(streamChat(overWs, { message, sessionId: 'long-ws' }))).at(-1)).toMatchObject({ type: 'done' });
  });

  it('over SSE, the credential in the URL counts too: a long key and a message that fit alone are refused together, naming why', async () => {
    const key = `k${'0123456789'.repeat(600)}`;
    const { url } = await startServer({ API_KEYS: key, SIM_DELAY_MS: 0 });
    const overSse = client({ url, transport: 'sse', apiKey: key });
    // About 10,600 characters once in the URL: under the bound alone, over Node's 16 KB with the 6 KB key.
    const message = 'abcdefghij'.repeat(1050);
    await expect(collect(streamChat(overSse, { message, sessionId: 'long-key' }))).rejects.toThrow(/too long to send over SSE/);
    expect((await collect(streamChat(overSse, { message: 'short', sessionId: 'long-key' }))).at(-1)).toMatchObject({ type: 'done' });
  });

  it.each(['ws', 'sse'] as const)('over %s, a reply whose server cannot be reached at all gives up after giveUpAfterMs, and throws', async (transport) => {
    const url = (await refusedBaseURL()).replace(/\/v1$/, '');
    const c = client({ url, transport });
    const startedAt = performance.now();
    const refusal = await collect(streamChat(c, { message: 'hello', sessionId: 'never', giveUpAfterMs: 1000 })).catch((error: unknown) => error);
    expect(performance.now() - startedAt).toBeLessThan(5000);
    expect((refusal as Error).message).toMatch(/stayed lost|could not be reached/);
    expect((refusal as TRPCClientError<AppRouter>).data).toMatchObject({ code: 'SERVICE_UNAVAILABLE', httpStatus: 503, sluiceCode: 'unavailable' });
  });

  it('giveUpAfterMs beyond what a timer holds (about 24.8 days) waits as Infinity does, and a bad value is refused', async () => {
    const { url } = await startServer({ SIM_DELAY_MS: 20, RESUME_GRACE_MS: 60_000 });
    const proxy = await startTcpProxy(url);
    const c = client({ url: proxy.url, transport: 'ws' });
    const events: StreamEvent[] = [];
    for await (const event of streamChat(c, { message: 'explain caching', sessionId: 'long-wait', giveUpAfterMs: 30 * 24 * 3600 * 1000 })) {
      events.push(event);
      if (events.length === 3) proxy.dropAll();
    }
    expect(events.filter((e) => e.type !== 'delta')).toEqual([expect.objectContaining({ type: 'done' })]);
    await expect(collect(streamChat(c, { message: 'x', giveUpAfterMs: 0 }))).rejects.toThrow(RangeError);
    await expect(collect(streamChat(c, { message: 'x', giveUpAfterMs: Number.NaN }))).rejects.toThrow(RangeError);
  });

  it('closeChatClient ends a WebSocket client that cannot reach its server: its streams end, and it stops reconnecting', async () => {
    const url = (await refusedBaseURL()).replace(/\/v1$/, '');
    const c = createChatClient({ url, transport: 'ws' });
    let ended = false;
    const loop = collect(streamChat(c, { message: 'hello', sessionId: 'down' }))
      .catch(() => undefined)
      .finally(() => (ended = true));
    await new Promise((resolve) => setImmediate(resolve));
    await closeChatClient(c);
    await vi.waitFor(() => expect(ended).toBe(true), { timeout: 2000 });
    await loop;
    // Closed for good: a call fails at once instead of opening the socket again.
    await expect(c.health.query()).rejects.toThrow(/closed/);
  });

  it.each(['ws', 'sse'] as const)('over %s, Stop while the connection is lost ends the loop at once', async (transport) => {
    const { url } = await startServer({ SIM_DELAY_MS: 50, RESUME_GRACE_MS: 30_000 });
    const proxy = await startTcpProxy(url);
    const c = client({ url: proxy.url, transport });
    const stop = new AbortController();
    let stoppedAt = 0;
    const onConnection = (state: 'lost' | 'resumed'): void => {
      if (state !== 'lost') return;
      stoppedAt = performance.now();
      stop.abort();
    };
    let deltas = 0;
    for await (const event of streamChat(c, { message: 'stop me', sessionId: 'stop', signal: stop.signal, onConnection })) {
      // The network goes away, and stays away.
      if (event.type === 'delta' && ++deltas === 2) await proxy.close();
    }
    expect(stoppedAt).toBeGreaterThan(0);
    expect(performance.now() - stoppedAt).toBeLessThan(1000);
  });

  it('over WebSocket in Node, a connection that goes silent (no FIN, no RST) is given up within its keep-alive, and the reply resumes', async () => {
    const { url } = await startServer({ SIM_DELAY_MS: 100, RESUME_GRACE_MS: 60_000 });
    const proxy = await startTcpProxy(url);
    const c = client({ url: proxy.url, transport: 'ws' });
    let frozeAt = 0;
    let lostAfter = 0;
    const onConnection = (state: 'lost' | 'resumed'): void => {
      if (state === 'lost') {
        lostAfter = performance.now() - frozeAt;
        proxy.release();
      }
    };
    const events: StreamEvent[] = [];
    for await (const event of streamChat(c, { message: 'the path dies', sessionId: 'silent', onConnection })) {
      events.push(event);
      if (events.length === 2) {
        // The path dies silently (a NAT forgets it, say): nothing gets through either way, and the sockets stay open.
        proxy.freeze();
        frozeAt = performance.now();
      }
    }
    // A ping every 10 s, 5 s for its pong, then a short wait for the close handshake (not ws's 30 s).
    expect(lostAfter).toBeGreaterThan(0);
    expect(lostAfter).toBeLessThan(20_000);
    expect(events.at(-1)?.type).toBe('done');
  }, 60_000);

  it('validates its options with a precise message', () => {
    expect(() => createChatClient({ url: 'localhost:8000' })).toThrow(/http: or https:|absolute URL/);
    expect(() => createChatClient({ url: 'http://x', transport: 'smoke' as never })).toThrow(/'ws', 'sse' or 'auto'/);
    expect(() => createChatClient({ url: 'http://x', wsConnectTimeoutMs: -1 })).toThrow(/wsConnectTimeoutMs/);
    expect(() => createChatClient({ url: 'http://x', apiKey: 'k'.repeat(16), getToken: () => 't' })).toThrow(/apiKey or getToken, not both/);
    expect(() => createChatClient({ url: 'http://x', getToken: 'token' as never })).toThrow(/getToken must be a function/);
  });
});

describe('createChatClient with getToken (users signed in with an identity provider)', () => {
  it.each(['ws', 'sse'] as const)('over %s, asks getToken (sync or async) for each connection and request, and streams as that user', async (transport) => {
    const idp = await startIdentityProvider();
    const { url } = await startServer({ AUTH_JWKS_URL: idp.jwksUrl });
    const token = await idp.token('alice');
    let calls = 0;
    const sync = client({ url, transport, getToken: () => (calls++, token) });
    const events = await collect(streamChat(sync, { message: 'as alice', sessionId: 'mine' }));
    expect(events.at(-1)?.type).toBe('done');
    expect((await sync.chat.history.query({ sessionId: 'mine' })).messages).toHaveLength(2);
    // Over WebSocket the token goes with the connection; over SSE and HTTP with each request.
    expect(calls).toBeGreaterThanOrEqual(transport === 'ws' ? 1 : 2);

    const async = client({ url, transport, getToken: async () => idp.token('alice') });
    expect((await async.chat.history.query({ sessionId: 'mine' })).messages).toHaveLength(2);
    const bob = client({ url, transport, getToken: async () => idp.token('bob') });
    expect((await bob.chat.history.query({ sessionId: 'mine' })).messages).toEqual([]);
    // No token yet (signed out): the server refuses, as for a bad one.
    const none = client({ url, transport, getToken: () => undefined });
    await expect(none.chat.history.query({ sessionId: 'mine' })).rejects.toMatchObject({ data: { code: 'UNAUTHORIZED' } });
  });

  it.each(['ws', 'sse'] as const)(
    'over %s, a token that expires does not cut the reply in flight; the next call gets a fresh token by itself',
    async (transport) => {
      const { idp, url, clock } = await serverWithClock({ SIM_DELAY_MS: 10 });
      let issued = 0;
      const disconnects: string[] = [];
      const c = client({
        url,
        transport,
        getToken: async () => (issued++, idp.token('alice', { at: clock.now, expiresIn: 60 })),
        onDisconnect: () => disconnects.push('lost'),
      });
      const events: StreamEvent[] = [];
      for await (const event of streamChat(c, { message: 'a long answer', sessionId: 'exp' })) {
        events.push(event);
        // Ten minutes pass while the reply streams: the token it was started with has expired.
        if (events.length === 1) clock.now += 10 * 60_000;
      }
      expect(events.at(-1)?.type).toBe('done');
      const before = issued;
      // Refused with the old token, the call is made again with a new one (over a new connection for WebSocket).
      const next = await collect(streamChat(c, { message: 'and another', sessionId: 'exp' }));
      expect(next.at(-1)?.type).toBe('done');
      expect(issued).toBeGreaterThan(before);
      expect((await c.chat.history.query({ sessionId: 'exp' })).messages.map((m) => m.status)).toEqual(['complete', 'complete', 'complete', 'complete']);
      expect(disconnects).toEqual([]);
    },
  );

  it.each(['ws', 'sse'] as const)(
    'over %s, a reply whose connection drops twice after its token expired resumes both times with a fresh token, and ends done',
    async (transport) => {
      const { idp, url, clock } = await serverWithClock({ SIM_DELAY_MS: 15, RESUME_GRACE_MS: 30_000 });
      const proxy = await startTcpProxy(url);
      let issued = 0;
      const c = client({ url: proxy.url, transport, getToken: async () => (issued++, idp.token('alice', { at: clock.now, expiresIn: 60 })) });
      // About 440 deltas at 15 ms: the second blip comes while the reply still streams live.
      const message = 'word '.repeat(400).trim();
      const events: StreamEvent[] = [];
      let deltas = 0;
      for await (const event of streamChat(c, { message, sessionId: 'drops' })) {
        events.push(event);
        if (event.type !== 'delta') continue;
        deltas++;
        // Ten minutes pass and the network blips: the token the connection carries has expired.
        if (deltas === 5 || deltas === 320) {
          clock.now += 10 * 60_000;
          proxy.dropAll();
        }
      }
      expect(events.at(-1)?.type).toBe('done');
      const text = events.map((e) => (e.type === 'delta' ? e.delta : '')).join('');
      expect(text).toBe(simulatedDeltas(message).join(''));
      expect(issued).toBeGreaterThanOrEqual(3);
    },
    30_000,
  );

  it('over WebSocket, a getToken slower than the server gives a connection to show its credential is asked before the socket opens', async () => {
    const idp = await startIdentityProvider();
    const { url } = await startServer({ AUTH_JWKS_URL: idp.jwksUrl, WS_AUTH_TIMEOUT_MS: 1000 });
    // A refresh slower than the window: a call answers only once every socket open when it began
    // has been closed, as the server does to a socket whose window ended. Asked after a socket
    // opens, the token is always too late; asked before, it comes at once.
    const open = new Set<NodeWebSocket>();
    class TrackedWebSocket extends NodeWebSocket {
      constructor(address: string | URL, protocols?: string | string[]) {
        super(address, protocols);
        open.add(this);
        this.once('close', () => open.delete(this));
      }
    }
    const c = client({
      url,
      transport: 'ws',
      WebSocket: TrackedWebSocket,
      getToken: async () => {
        await Promise.all(
          [...open].map((socket) => (socket.readyState === NodeWebSocket.CLOSED ? Promise.resolve() : once(socket, 'close').then(() => undefined))),
        );
        return idp.token('alice');
      },
    });
    const events = await collect(streamChat(c, { message: 'slow token', sessionId: 'slow', giveUpAfterMs: 10_000 }));
    expect(events.at(-1)?.type).toBe('done');
  });

  it('over WebSocket, a getToken that never answers (a refresh stuck on the network) is given up and asked again; the reply resumes', async () => {
    const idp = await startIdentityProvider();
    const server = await startServer({ AUTH_JWKS_URL: idp.jwksUrl, SIM_DELAY_MS: 20, RESUME_GRACE_MS: 30_000 });
    const proxy = await startTcpProxy(server.url);
    let calls = 0;
    const c = client({
      url: proxy.url,
      transport: 'ws',
      tokenTimeoutMs: 500,
      getToken: () => (++calls === 2 ? new Promise<string>(() => undefined) : idp.token('alice')),
    });
    const events: StreamEvent[] = [];
    for await (const event of streamChat(c, { message: 'stuck refresh', sessionId: 'stuck', giveUpAfterMs: 10_000 })) {
      events.push(event);
      if (events.length === 3) proxy.dropAll();
    }
    expect(events.at(-1)?.type).toBe('done');
    expect(calls).toBeGreaterThanOrEqual(3);
    // And the client goes on working.
    expect((await c.chat.history.query({ sessionId: 'stuck' })).messages).toHaveLength(2);
  });

  it('over WebSocket, a connection the server asks to replace is no disconnect, and leaves no token behind for a later reconnect', async () => {
    const idp = await startIdentityProvider();
    const server = await startServer({ AUTH_JWKS_URL: idp.jwksUrl, API_KEYS: OPERATOR_KEY });
    let calls = 0;
    let disconnects = 0;
    let opens = 0;
    const c = client({
      url: server.url,
      transport: 'ws',
      getToken: async () => (calls++, idp.token('alice')),
      onDisconnect: () => disconnects++,
      onTransport: () => opens++,
    });
    await c.chat.history.query({ sessionId: 'r' });
    const before = calls;
    // A drain elsewhere in the fleet: tRPC's reconnect notification. The client opens a new
    // connection (asking getToken for it), then lets the old one go.
    server.sluice.http.beginDrain();
    await vi.waitFor(() => expect(opens).toBe(2));
    await vi.waitFor(async () => expect(await metric(server.url, 'sluice_open_connections', 'ws')).toBe(1));
    await c.chat.history.query({ sessionId: 'r' });
    // One call for the new connection, one for the query (each call over WebSocket asks who is
    // signed in now): none kept, stale, for whenever the next drop comes.
    expect(calls - before).toBe(2);
    // The client was never without a connection.
    expect(disconnects).toBe(0);
  });
});

/**
 * A server that verifies users' tokens by a clock the test moves (`clock.now += ...`), and the
 * identity provider that signs them.
 */
async function serverWithClock(settings: Parameters<typeof startServer>[0]) {
  const idp = await startIdentityProvider();
  const clock = { now: Date.now() };
  const credentials = new JwtVerifier({ keys: { jwksUrl: new URL(idp.jwksUrl) }, now: () => clock.now });
  const { url } = await startServer(settings, { credentials });
  return { idp, url, clock };
}

const OPERATOR_KEY = 'k-operator-0123456789';

async function metric(url: string, name: string, transport: string): Promise<number | undefined> {
  const text = await (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${OPERATOR_KEY}` } })).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{transport="${transport}"}`));
  return line === undefined ? undefined : Number(line.split(' ').at(-1));
}
