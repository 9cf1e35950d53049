import WebSocket from 'ws';
import { once } from 'node:events';
import { Agent, request, type IncomingMessage } from 'node:http';
import { describe, expect, it, vi } from 'vitest';
import { ErrorBody, SessionHistory, SseErrorData } from '../shared/index.ts';
import { simulatedDeltas } from '../server/core/providers/simulated.ts';
import { startSluiceProcess } from './helpers/process.ts';
import { rawWebSocket } from './helpers/raw-ws.ts';
import { startRedis } from './helpers/redis.ts';
import { drain, rawRequest, streamSseRoute, type SseFrame } from './helpers/sse.ts';

describe('graceful shutdown', () => {
  it('SIGTERM: new streams get 503, short replies finish, long ones end with the error event, partials are stored, exit 0', async () => {
    const redis = await startRedis();
    if (!redis) return;
    const env = { REDIS_URL: redis.url, SIM_DELAY_MS: 30, SHUTDOWN_DRAIN_MS: 2500, RESUME_GRACE_MS: 0 };
    const sluice = await startSluiceProcess(env);

    const short = streamSseRoute(sluice.url, { message: 'short', session_id: 'short' });
    const long = streamSseRoute(sluice.url, { message: 'long '.repeat(300), session_id: 'long' });
    const shortFrames: SseFrame[] = [(await short.next()).value as SseFrame];
    const longFrames: SseFrame[] = [(await long.next()).value as SseFrame];
    const ws = new WebSocket(`${sluice.url.replace('http', 'ws')}/trpc`);
    await once(ws, 'open');
    const wsMessages: string[] = [];
    ws.on('message', (data) => wsMessages.push(String(data)));

    const startedAt = performance.now();
    const exited = once(sluice.child, 'exit');
    sluice.child.kill('SIGTERM');
    sluice.child.kill('SIGTERM'); // a second signal is harmless

    // Draining: a new stream is refused with a retryable 503.
    let refused: Response | undefined;
    for (;;) {
      refused = await fetch(`${sluice.url}/v1/chat/stream`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ message: 'too late', session_id: 'late' }),
      });
      if (refused.status !== 200) break;
      for await (const _ of refused.body as unknown as AsyncIterable<unknown>) void _;
    }
    expect(refused.status).toBe(503);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(ErrorBody.parse(await refused.json()).error.code).toBe('unavailable');
    const ready = await fetch(`${sluice.url}/ready`);
    expect(ready.status).toBe(503);

    for await (const frame of short) shortFrames.push(frame);
    for await (const frame of long) longFrames.push(frame);
    const [code] = await exited;
    expect(code).toBe(0);
    expect(performance.now() - startedAt).toBeLessThan(2500 + 4000);

    expect(JSON.parse(shortFrames.at(-1)!.data)).toMatchObject({ done: true });
    const ending = longFrames.at(-1)!;
    expect(ending.event).toBe('error');
    const { partial } = SseErrorData.parse(JSON.parse(ending.data));
    expect(partial.length).toBeGreaterThan(0);
    // WebSocket clients were told to reconnect (tRPC's reconnect notification).
    expect(wsMessages.some((m) => m.includes('"reconnect"'))).toBe(true);

    // Every reply is in history, read through a fresh instance on the same Redis.
    const next = await startSluiceProcess(env);
    const history = async (session: string) => SessionHistory.parse(await (await fetch(`${next.url}/v1/sessions/${session}/messages`)).json());
    expect((await history('short')).messages[1]).toMatchObject({ status: 'complete' });
    expect((await history('long')).messages[1]).toMatchObject({ status: 'interrupted', content: partial });
  });
});

describe('shutdown with nobody reading the log', () => {
  it("a stream following another instance's reply is kept through the drain, and ended with the error event (not cut) if the reply outlasts it", async () => {
    const redis = await startRedis();
    if (!redis) return;
    const a = await startSluiceProcess({ REDIS_URL: redis.url, SIM_DELAY_MS: 30 });
    const follow = async (sluice: Awaited<ReturnType<typeof startSluiceProcess>>, session: string, words: number) => {
      const reply = streamSseRoute(a.url, { message: 'word '.repeat(words).trim(), session_id: session });
      const first = (await reply.next()).value as SseFrame;
      drain(reply).catch(() => undefined);
      // The same reply, followed through the other instance from its first event.
      return streamSseRoute(sluice.url, { message: 'x', session_id: session }, { headers: { 'last-event-id': first.id! } });
    };

    // The reply (about 1.5 s) ends within B's drain: its follower gets the whole of it.
    const b = await startSluiceProcess({ REDIS_URL: redis.url, SHUTDOWN_DRAIN_MS: 10_000 });
    const followed = await follow(b, 'within', 10);
    const firstFollowed = (await followed.next()).value as SseFrame;
    expect(JSON.parse(firstFollowed.data)).toMatchObject({ done: false });
    const exited = b.stop('SIGTERM');
    const frames = await drain(followed);
    expect(JSON.parse(frames.at(-1)!.data)).toMatchObject({ done: true });
    expect(await exited).toBe(0);

    // A reply (about 12 s) that outlasts C's drain: its follower gets an ending it can act on (resume elsewhere).
    const c = await startSluiceProcess({ REDIS_URL: redis.url, SHUTDOWN_DRAIN_MS: 500 });
    const cut = await follow(c, 'outlasts', 400);
    await cut.next();
    const stopped = c.stop('SIGTERM');
    const ending = (await drain(cut)).at(-1)!;
    expect(ending.event).toBe('error');
    const { message, partial } = SseErrorData.parse(JSON.parse(ending.data));
    expect(message).toMatch(/shutting down/);
    // `partial` is the reply's text so far, as everywhere: from its start, not from where this stream resumed.
    expect(partial.startsWith(simulatedDeltas('word '.repeat(400).trim()).slice(0, 3).join(''))).toBe(true);
    expect(ending.id).toMatch(/:\d+$/);
    expect(await stopped).toBe(0);
  }, 30_000);

  it('while draining, a kept-alive connection is closed as its response ends, and answers begun meanwhile say Connection: close', async () => {
    const sluice = await startSluiceProcess({ SIM_DELAY_MS: 30, SHUTDOWN_DRAIN_MS: 3000 });
    // A long reply (about 6 s) keeps the instance draining for the whole of SHUTDOWN_DRAIN_MS.
    const long = streamSseRoute(sluice.url, { message: 'word '.repeat(200).trim(), session_id: 'long' });
    await long.next();
    // A short one (about 1.2 s) on a kept-alive connection, as a client's pool holds it.
    const agent = new Agent({ keepAlive: true });
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = request(`${sluice.url}/v1/chat/stream`, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, resolve);
      req.once('error', reject);
      req.end(JSON.stringify({ message: 'short', session_id: 'short' }));
    });
    const socket = res.socket;
    await once(res, 'data');
    const exited = sluice.stop('SIGTERM');
    res.resume();
    await once(res, 'end');
    const endedAt = performance.now();
    // Its connection goes with it, long before the drain is over: the client's next call opens a new
    // one (to another instance, behind a balancer) instead of meeting this one as it closes.
    await vi.waitFor(() => expect(socket.destroyed).toBe(true), { timeout: 1000 });
    expect(performance.now() - endedAt).toBeLessThan(1000);
    const health = await rawRequest(`${sluice.url}/health`, { method: 'GET' });
    expect(health.status).toBe(200);
    expect(health.headers.connection).toBe('close');
    await drain(long).catch(() => undefined);
    expect(await exited).toBe(0);
    agent.destroy();
  });

  it('a WebSocket client that never answers the close frame does not hold the exit past the drain and its grace', async () => {
    const sluice = await startSluiceProcess({ SHUTDOWN_DRAIN_MS: 1000 });
    // A peer gone quiet (a laptop asleep, a dropped mobile link): its socket stays open and says nothing.
    await rawWebSocket(sluice.url);
    const startedAt = performance.now();
    expect(await sluice.stop('SIGTERM')).toBe(0);
    // The drain (1 s, no reply running: at once) and the close grace (2 s), not ws's own 30 s wait.
    expect(performance.now() - startedAt).toBeLessThan(5000);
  });

  it('exits on SIGTERM when its stdout reader has gone (| head): the lines it cannot write are dropped, not retried forever', async () => {
    const sluice = await startSluiceProcess({ SIM_DELAY_MS: 0, SHUTDOWN_DRAIN_MS: 500, STORE: 'memory' });
    // The reader of its stdout goes away, as `| head` does once it has its lines.
    sluice.child.stdout!.destroy();
    for (let i = 0; i < 5; i++) expect((await fetch(`${sluice.url}/health`)).status).toBe(200);
    const exited = once(sluice.child, 'exit');
    sluice.child.kill('SIGTERM');
    const exit = await Promise.race([exited.then(() => 'exited'), new Promise((resolve) => setTimeout(resolve, 8000, 'still running'))]);
    expect(exit).toBe('exited');
  });
});
