import { createTRPCClient, createWSClient, httpBatchLink, httpSubscriptionLink, splitLink, wsLink } from '@trpc/client';
import { EventSource } from 'eventsource';
import superjson from 'superjson';
import WebSocket from 'ws';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../server/config.ts';
import { createSimulatedProvider, simulatedDeltas } from '../server/core/providers/simulated.ts';
import type { AppRouter } from '../server/router-type.ts';
import { SessionHistory, SseDeltaData, SseMessageData, type StreamEvent } from '../shared/index.ts';
import { recordingProvider } from './helpers/recording-provider.ts';
import { startCluster, type ClusterSetup } from './helpers/redis-topologies.ts';
import { startServer } from './helpers/server.ts';
import { openSseRoute, streamSseRoute, type SseFrame } from './helpers/sse.ts';
import { startTcpProxy, type TcpProxy } from './helpers/tcp-proxy.ts';
import { collectStream } from './helpers/trpc-clients.ts';

const PROMPT = 'resume me';
const FULL = simulatedDeltas(PROMPT);

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

/** Checks a resumed stream: every delta exactly once, in order, then done. */
function expectComplete(events: StreamEvent[]): void {
  const deltas = events.filter((e) => e.type === 'delta');
  expect(deltas.map((e) => (e.type === 'delta' ? e.index : 0))).toEqual(FULL.map((_, i) => i + 1));
  expect(deltas.map((e) => (e.type === 'delta' ? e.delta : '')).join('')).toBe(FULL.join(''));
  // (The documented SSE route's done event has no usage; tRPC's has.)
  expect(events.at(-1)).toMatchObject({ type: 'done', totalChunks: FULL.length });
}

/** Cuts every connection through the proxy once the fifth delta has arrived. */
const dropAfterFive = (proxy: TcpProxy) => (event: StreamEvent) => {
  if (event.type === 'delta' && event.index === 5) proxy.dropAll();
};

/**
 * Where the replies' shared state lives: in the process, or on a Redis Cluster of three masters
 * (the event logs, leases and signals each on the shard of their key), started once for the file.
 */
let cluster: Promise<ClusterSetup | undefined> | undefined;
const STORES = [
  { store: 'in memory', env: async (): Promise<Record<string, string> | undefined> => ({}) },
  {
    store: 'on a Redis Cluster',
    env: async (): Promise<Record<string, string> | undefined> => {
      const setup = await (cluster ??= startCluster());
      return setup && { REDIS_CLUSTER_NODES: setup.nodes };
    },
  },
];

describe.each(STORES)('resume after a dropped connection, $store', ({ env }) => {
  /** A server on this store (undefined when the store's binaries are not installed). */
  const start = async (settings: Parameters<typeof startServer>[0] = {}, overrides: Parameters<typeof startServer>[1] = {}) => {
    const storeEnv = await env();
    return storeEnv && startServer({ ...settings, ...storeEnv }, overrides);
  };

  it('SSE route: Last-Event-ID gives exactly the events after it, then the live tail', async () => {
    const recorder = recordingProvider(createSimulatedProvider({ delayMs: 15 }));
    const server = await start({ RESUME_GRACE_MS: 5000 }, { provider: recorder.provider });
    if (!server) return;
    const proxy = await startTcpProxy(server.url);
    const frames: SseFrame[] = [];
    await expect(
      (async () => {
        for await (const frame of streamSseRoute(proxy.url, { message: PROMPT, session_id: 'r' })) {
          frames.push(frame);
          if (frames.length === 5) proxy.dropAll();
        }
      })(),
    ).rejects.toThrow();
    const lastId = frames.at(-1)!.id!;
    expect(lastId).toMatch(/:5$/);

    for await (const frame of streamSseRoute(server.url, { message: PROMPT, session_id: 'r' }, { headers: { 'last-event-id': lastId } })) {
      frames.push(frame);
    }
    const events: StreamEvent[] = frames.map((f) => {
      const data = SseMessageData.parse(JSON.parse(f.data));
      return data.done ? { type: 'done', totalChunks: data.total_chunks } : { type: 'delta', delta: data.delta, index: SseDeltaData.parse(data).chunk_index };
    });
    expectComplete(events);
    expect(new Set(frames.map((f) => f.id)).size).toBe(frames.length);
    expect(recorder.calls).toHaveLength(1); // the resume started no second generation
    const history = SessionHistory.parse(await (await fetch(`${server.url}/v1/sessions/r/messages`)).json());
    expect(history.messages.map((m) => m.status)).toEqual(['complete', 'complete']);
  });

  it('SSE route: an unknown or foreign event id is a 404, a malformed one a 422', async () => {
    const server = await start();
    if (!server) return;
    const post = (id: string) =>
      fetch(`${server.url}/v1/chat/stream`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'last-event-id': id },
        body: JSON.stringify({ message: 'x' }),
      });
    expect((await post('AAAAAAAAAAAAAAAA:3')).status).toBe(404);
    expect((await post('not an id')).status).toBe(422);
  });

  it('SSE route: a position beyond what a running reply has made is a 404 at once, not a stream that waits for it', async () => {
    const server = await start({ SIM_DELAY_MS: 20, RESUME_GRACE_MS: 5000 });
    if (!server) return;
    let first: string | undefined;
    const running = openSseRoute(server.url, { message: PROMPT, session_id: 'ahead' }, {}, (frame) => (first ??= frame.id));
    await vi.waitFor(() => expect(first).toBeDefined());
    const generation = first!.split(':')[0]!;
    const ahead = await fetch(`${server.url}/v1/chat/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'last-event-id': `${generation}:9999999` },
      body: JSON.stringify({ message: 'x' }),
    });
    expect(ahead.status).toBe(404);
    expect(await running.done).toBe(200);
  });

  it('tRPC over WebSocket: the stock wsLink resumes by itself after the socket is cut', async () => {
    const recorder = recordingProvider(createSimulatedProvider({ delayMs: 15 }));
    const server = await start({ RESUME_GRACE_MS: 5000 }, { provider: recorder.provider });
    if (!server) return;
    const proxy = await startTcpProxy(server.url);
    const wsClient = createWSClient({ url: `${proxy.url.replace('http', 'ws')}/trpc`, WebSocket: WebSocket as never, retryDelayMs: () => 20 });
    closers.push(() => wsClient.close());
    const client = createTRPCClient<AppRouter>({ links: [wsLink({ client: wsClient, transformer: superjson })] });
    const { events, ids } = await collectStream(client, { message: PROMPT, sessionId: 'w' }, dropAfterFive(proxy));
    expectComplete(events);
    expect(new Set(ids).size).toBe(ids.length);
    expect(recorder.calls).toHaveLength(1);
  });

  it('tRPC over SSE: the stock httpSubscriptionLink resumes by itself after the stream is cut', async () => {
    const recorder = recordingProvider(createSimulatedProvider({ delayMs: 15 }));
    const server = await start({ RESUME_GRACE_MS: 5000 }, { provider: recorder.provider });
    if (!server) return;
    const proxy = await startTcpProxy(server.url);
    const client = createTRPCClient<AppRouter>({
      links: [
        splitLink({
          condition: (op) => op.type === 'subscription',
          true: httpSubscriptionLink({ url: `${proxy.url}/trpc`, transformer: superjson, EventSource }),
          false: httpBatchLink({ url: `${proxy.url}/trpc`, transformer: superjson }),
        }),
      ],
    });
    const { events } = await collectStream(client, { message: PROMPT, sessionId: 'e' }, dropAfterFive(proxy));
    expectComplete(events);
    expect(recorder.calls).toHaveLength(1);
  });
});

describe.each(STORES)('resume window, $store', ({ env }) => {
  const start = async (settings: Parameters<typeof startServer>[0] = {}, overrides: Parameters<typeof startServer>[1] = {}) => {
    const storeEnv = await env();
    return storeEnv && startServer({ ...settings, ...storeEnv }, overrides);
  };

  it('a client that stays away: the upstream is aborted after the window, the partial stored as interrupted', async () => {
    const recorder = recordingProvider(createSimulatedProvider({ delayMs: 20 }));
    const server = await start({ RESUME_GRACE_MS: 400 }, { provider: recorder.provider });
    if (!server) return;
    let n = 0;
    for await (const _frame of streamSseRoute(server.url, { message: PROMPT, session_id: 'g' })) if (++n === 3) break;
    await vi.waitFor(() => expect(server.sluice.service.listenerCount).toBe(0));
    const leftAt = performance.now();
    // Inside the window the reply keeps going.
    expect(recorder.calls[0]!.aborted).toBe(false);
    await vi.waitFor(() => expect(recorder.calls[0]!.settled).toBe(true), { timeout: 5000 });
    expect(recorder.calls[0]!.aborted).toBe(true);
    expect(performance.now() - leftAt).toBeGreaterThanOrEqual(300);
    const history = SessionHistory.parse(await (await fetch(`${server.url}/v1/sessions/g/messages`)).json());
    expect(history.messages[1]).toMatchObject({ status: 'interrupted' });
    expect(history.messages[1]!.content.length).toBeGreaterThan(0);
    expect(history.messages[1]!.content.length).toBeLessThan(FULL.join('').length);
  });

  it('a client that comes back inside the window gets the whole reply', async () => {
    const recorder = recordingProvider(createSimulatedProvider({ delayMs: 20 }));
    const server = await start({ RESUME_GRACE_MS: 10_000 }, { provider: recorder.provider });
    if (!server) return;
    const frames: SseFrame[] = [];
    for await (const frame of streamSseRoute(server.url, { message: PROMPT, session_id: 'b' })) {
      frames.push(frame);
      if (frames.length === 3) break;
    }
    await vi.waitFor(() => expect(server.sluice.service.listenerCount).toBe(0));
    for await (const frame of streamSseRoute(server.url, { message: PROMPT, session_id: 'b' }, { headers: { 'last-event-id': frames.at(-1)!.id! } })) {
      frames.push(frame);
    }
    const deltas = frames.slice(0, -1).map((f) => SseDeltaData.parse(JSON.parse(f.data)));
    expect(deltas.map((d) => d.chunk_index)).toEqual(FULL.map((_, i) => i + 1));
    expect(recorder.calls[0]!.aborted).toBe(false);
    const history = SessionHistory.parse(await (await fetch(`${server.url}/v1/sessions/b/messages`)).json());
    expect(history.messages[1]).toMatchObject({ status: 'complete', content: FULL.join('') });
  });

  it('an explicit cancel stops the reply at once, whatever the window', async () => {
    const recorder = recordingProvider(createSimulatedProvider({ delayMs: 20 }));
    const server = await start({ RESUME_GRACE_MS: 60_000 }, { provider: recorder.provider });
    if (!server) return;
    const frames: SseFrame[] = [];
    for await (const frame of streamSseRoute(server.url, { message: PROMPT, session_id: 'c' })) {
      frames.push(frame);
      if (frames.length === 2) {
        const res = await fetch(`${server.url}/v1/chat/cancel`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ session_id: 'c' }),
        });
        expect(await res.json()).toEqual({ cancelled: true });
      }
    }
    expect(frames.at(-1)!.event).toBe('error');
    expect(JSON.parse(frames.at(-1)!.data).message).toBe('The reply was cancelled');
    expect(recorder.calls[0]!.aborted).toBe(true);
    const again = await fetch(`${server.url}/v1/chat/cancel`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ session_id: 'c' }),
    });
    expect(await again.json()).toEqual({ cancelled: false });
  });

  it('several listeners follow one reply; it goes on while one remains', async () => {
    const recorder = recordingProvider(createSimulatedProvider({ delayMs: 15 }));
    // No window: the reply stops as soon as its last listener leaves, not before.
    const server = await start({ RESUME_GRACE_MS: 0 }, { provider: recorder.provider });
    if (!server) return;
    const first = streamSseRoute(server.url, { message: PROMPT, session_id: 'm' });
    const firstFrame = (await first.next()).value as SseFrame;
    const second = streamSseRoute(server.url, { message: PROMPT, session_id: 'm' }, { headers: { 'last-event-id': firstFrame.id! } });
    const frames: SseFrame[] = [(await second.next()).value as SseFrame];
    await vi.waitFor(() => expect(server.sluice.service.listenerCount).toBe(2));
    await first.return(undefined); // the first tab closes
    for await (const frame of second) frames.push(frame);
    expect(JSON.parse(frames.at(-1)!.data)).toMatchObject({ done: true, total_chunks: FULL.length });
    expect(frames.length).toBe(FULL.length); // events 2..40
    expect(recorder.calls[0]!.aborted).toBe(false);
  });
});

describe('the stock wsLink at the subscription limit', () => {
  it('resumes as many subscriptions as a connection may hold (WS_MAX_SUBSCRIPTIONS), which it sends again in one message', async () => {
    const server = await startServer({ SIM_DELAY_MS: 15, RESUME_GRACE_MS: 30_000 });
    const limit = loadConfig({}).WS_MAX_SUBSCRIPTIONS;
    const proxy = await startTcpProxy(server.url);
    const wsClient = createWSClient({ url: `${proxy.url.replace('http', 'ws')}/trpc`, WebSocket: WebSocket as never, retryDelayMs: () => 20 });
    closers.push(() => wsClient.close());
    const client = createTRPCClient<AppRouter>({ links: [wsLink({ client: wsClient, transformer: superjson })] });
    const started = Array.from({ length: limit }, () => 0);
    const streams = started.map((_, i) =>
      collectStream(client, { message: PROMPT, sessionId: `full-${i}` }, (event) => {
        if (event.type === 'delta') started[i]!++;
      }),
    );
    await vi.waitFor(() => expect(Math.min(...started)).toBeGreaterThanOrEqual(2));
    proxy.dropAll();
    for (const { events } of await Promise.all(streams)) expectComplete(events);
  });
});
