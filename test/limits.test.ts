import { TRPCClientError } from '@trpc/client';
import { Redis } from 'ioredis';
import WebSocket from 'ws';
import { once } from 'node:events';
import { describe, expect, it, vi } from 'vitest';
import type { AppRouter } from '../server/router-type.ts';
import { ErrorBody, SessionHistory } from '../shared/index.ts';
import { startRedis } from './helpers/redis.ts';
import { startServer } from './helpers/server.ts';
import { streamSseRoute, type SseFrame } from './helpers/sse.ts';
import { startTcpProxy } from './helpers/tcp-proxy.ts';
import { collectStream, stockClient } from './helpers/trpc-clients.ts';

const KEY = 'limits-key-0123456789abcdef';
const auth = { authorization: `Bearer ${KEY}` };
const post = (url: string, session: string) =>
  fetch(`${url}/v1/chat/stream`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...auth },
    body: JSON.stringify({ message: 'hi', session_id: session }),
  });

describe('limits', () => {
  it('requests per minute per key: 429 with Retry-After, over HTTP and tRPC', async () => {
    const { url } = await startServer({ API_KEYS: KEY, RATE_LIMIT_PER_MINUTE: 3 });
    for (let i = 0; i < 3; i++) expect((await post(url, `s${i}`)).status).toBe(200);
    const limited = await post(url, 's9');
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(ErrorBody.parse(await limited.json()).error).toMatchObject({ code: 'rate_limited', message: expect.stringMatching(/3 a minute/) });
    const history = await fetch(`${url}/v1/sessions/s0/messages`, { headers: auth });
    expect(history.status).toBe(429);
  });

  it('holds across instances sharing Redis', async () => {
    const redis = await startRedis();
    if (!redis) return;
    const settings = { API_KEYS: KEY, RATE_LIMIT_PER_MINUTE: 3, REDIS_URL: redis.url };
    const [a, b] = await Promise.all([startServer(settings), startServer(settings)]);
    expect((await post(a.url, 'x1')).status).toBe(200);
    expect((await post(b.url, 'x2')).status).toBe(200);
    expect((await post(a.url, 'x3')).status).toBe(200);
    expect((await post(b.url, 'x4')).status).toBe(429);
  });

  it('concurrent replies per key: 429 while the limit is in use, across instances', async () => {
    const redis = await startRedis();
    if (!redis) return;
    const settings = { API_KEYS: KEY, MAX_STREAMS_PER_KEY: 1, REDIS_URL: redis.url, SIM_DELAY_MS: 20 };
    const [a, b] = await Promise.all([startServer(settings), startServer(settings)]);
    const admin = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    const aliveMarks = async (): Promise<number> => (await admin.keys('*alive:*')).length;
    try {
      const running = streamSseRoute(a.url, { message: 'long', session_id: 'one' }, { headers: auth });
      await running.next();
      const second = await post(b.url, 'two');
      expect(second.status).toBe(429);
      expect(ErrorBody.parse(await second.json()).error.message).toMatch(/at once.*limit 1/);
      // The refused start kept nothing it took on its way (the running reply's liveness mark is the only one).
      expect(await aliveMarks()).toBe(1);
      for await (const _ of running) void _;
      expect((await post(b.url, 'two')).status).toBe(200);
      await vi.waitFor(async () => expect(await aliveMarks()).toBe(0));
    } finally {
      admin.disconnect();
    }
  });

  it('messages kept per session: the oldest are trimmed', async () => {
    const { url } = await startServer({ MAX_HISTORY_MESSAGES: 4 });
    for (const message of ['one', 'two', 'three']) {
      for await (const _ of streamSseRoute(url, { message, session_id: 't' })) void _;
    }
    const history = SessionHistory.parse(await (await fetch(`${url}/v1/sessions/t/messages`)).json());
    expect(history.messages.map((m) => (m.role === 'user' ? m.content : 'reply'))).toEqual(['two', 'reply', 'three', 'reply']);
  });

  it('WebSocket message size: an oversized frame closes that connection (1009); others go on', async () => {
    const { url } = await startServer({ WS_MAX_MESSAGE_BYTES: 2048 });
    const ws = new WebSocket(`${url.replace('http', 'ws')}/trpc`);
    await once(ws, 'open');
    const closed = once(ws, 'close');
    ws.send('x'.repeat(4096));
    const [code] = await closed;
    expect(code).toBe(1009);
    const { client } = stockClient(url, 'ws');
    expect((await collectStream(client, { message: 'still fine' })).events.at(-1)).toMatchObject({ type: 'done' });
  });

  it('WebSocket connections per key: the one over the limit is refused with TOO_MANY_REQUESTS', async () => {
    const { url } = await startServer({ API_KEYS: KEY, MAX_WS_CONNECTIONS_PER_KEY: 1 });
    const connect = async () => {
      const ws = new WebSocket(`${url.replace('http', 'ws')}/trpc?connectionParams=1`);
      await once(ws, 'open');
      ws.send(JSON.stringify({ method: 'connectionParams', data: { apiKey: KEY } }));
      ws.send(JSON.stringify({ id: 1, method: 'query', params: { path: 'health', input: { json: null } } }));
      const [data] = await once(ws, 'message');
      return { ws, reply: JSON.parse(String(data)) };
    };
    const first = await connect();
    expect(first.reply.result.data.json).toEqual({ status: 'ok' });
    const second = await connect();
    expect(second.reply.error.json.data).toMatchObject({ code: 'TOO_MANY_REQUESTS', sluiceCode: 'rate_limited' });
    await once(second.ws, 'close');
    first.ws.close();
    await once(first.ws, 'close');
    // The slot is freed when the first one leaves.
    const third = await connect();
    expect(third.reply.result.data.json).toEqual({ status: 'ok' });
    third.ws.close();
    await once(third.ws, 'close');
  });

  it('a WebSocket that closes while its slot is being taken in Redis does not keep the slot', async () => {
    const redis = await startRedis();
    if (!redis) return;
    // Redis behind a proxy that can hold the server's commands back while the client leaves.
    const proxy = await startTcpProxy(`http://127.0.0.1:${redis.port}`);
    const server = await startServer({ API_KEYS: KEY, MAX_WS_CONNECTIONS_PER_KEY: 1, REDIS_URL: proxy.url.replace('http', 'redis') });
    const wsUrl = `${server.url.replace('http', 'ws')}/trpc?connectionParams=1`;
    const openWebSockets = async () => {
      const text = await (await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${KEY}` } })).text();
      return [...text.matchAll(/^sluice_open_connections\{transport="ws[^"]*"\} (\d+)$/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
    };

    proxy.hold();
    const leaving = new WebSocket(wsUrl);
    await once(leaving, 'open');
    leaving.send(JSON.stringify({ method: 'connectionParams', data: { apiKey: KEY } }));
    await proxy.holding(); // the slot is being taken
    leaving.terminate();
    await vi.waitFor(async () => expect(await openWebSockets()).toBe(0));
    proxy.release();

    // The key's one slot is free again for the next connection.
    await vi.waitFor(
      async () => {
        const ws = new WebSocket(wsUrl);
        await once(ws, 'open');
        ws.send(JSON.stringify({ method: 'connectionParams', data: { apiKey: KEY } }));
        ws.send(JSON.stringify({ id: 1, method: 'query', params: { path: 'health', input: { json: null } } }));
        const [data] = await once(ws, 'message');
        ws.close();
        expect(JSON.parse(String(data)).result?.data.json).toEqual({ status: 'ok' });
      },
      { timeout: 3000, interval: 100 },
    );
  });

  it('subscriptions per WebSocket: the one over WS_MAX_SUBSCRIPTIONS is refused with TOO_MANY_REQUESTS', async () => {
    const { url } = await startServer({ WS_MAX_SUBSCRIPTIONS: 2, SIM_DELAY_MS: 20 });
    const ws = new WebSocket(`${url.replace('http', 'ws')}/trpc`);
    const replies: Array<{ id: number; result?: { type: string }; error?: { json: { message: string; data: { code: string } } } }> = [];
    ws.on('message', (data) => replies.push(JSON.parse(String(data))));
    await once(ws, 'open');
    const subscribe = (id: number) =>
      ws.send(
        JSON.stringify({ id, method: 'subscription', params: { path: 'chat.stream', input: { json: { message: 'a long one', sessionId: `sub-${id}` } } } }),
      );
    const reply = (id: number, type: string) =>
      vi.waitFor(() => expect(replies.find((r) => r.id === id && (r.result?.type ?? 'error') === type)).toBeDefined());
    subscribe(1);
    subscribe(2);
    await reply(1, 'started');
    await reply(2, 'started');
    subscribe(3);
    await reply(3, 'error');
    const refused = replies.find((r) => r.id === 3)!;
    expect(refused.error!.json.data).toMatchObject({ code: 'TOO_MANY_REQUESTS', sluiceCode: 'rate_limited' });
    expect(refused.error!.json.message).toMatch(/subscriptions.*limit 2/);
    // A place is freed when a subscription stops.
    ws.send(JSON.stringify({ id: 1, method: 'subscription.stop' }));
    await reply(1, 'stopped');
    subscribe(4);
    await reply(4, 'started');
    ws.close();
    await once(ws, 'close');
  });

  it('tRPC reports limits as typed errors', async () => {
    const { url } = await startServer({ API_KEYS: KEY, RATE_LIMIT_PER_MINUTE: 1 });
    const frames: SseFrame[] = [];
    for await (const f of streamSseRoute(url, { message: 'hi' }, { headers: auth })) frames.push(f);
    const { createChatClient, closeChatClient } = await import('../client/index.ts');
    const client = createChatClient({ url, transport: 'sse', apiKey: KEY });
    const error = await client.chat.history.query({ sessionId: 'default' }).catch((e: unknown) => e);
    expect((error as TRPCClientError<AppRouter>).data?.code).toBe('TOO_MANY_REQUESTS');
    await closeChatClient(client);
  });
});
