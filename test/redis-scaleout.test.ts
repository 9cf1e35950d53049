import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';
import { TRPCClientError } from '@trpc/client';
import { describe, expect, it, vi } from 'vitest';
import { simulatedDeltas } from '../server/core/providers/simulated.ts';
import type { AppRouter } from '../server/router-type.ts';
import { ErrorBody, SseErrorData, SseMessageData } from '../shared/index.ts';
import { SLUICE_SESSION_HEADER } from '../shared/openai.ts';
import { startSluiceProcess } from './helpers/process.ts';
import { startRedis } from './helpers/redis.ts';
import { startServer } from './helpers/server.ts';
import { history, type SseFrame, streamSseRoute } from './helpers/sse.ts';
import { stockClient } from './helpers/trpc-clients.ts';

const PROMPT = 'scale me out';
const FULL = simulatedDeltas(PROMPT);

async function readFrames(iterable: AsyncIterable<SseFrame>, stopAfter = Infinity): Promise<SseFrame[]> {
  const frames: SseFrame[] = [];
  for await (const frame of iterable) {
    frames.push(frame);
    if (frames.length >= stopAfter) break;
  }
  return frames;
}

const deltasOf = (frames: SseFrame[]) =>
  frames
    .filter((f) => f.event === 'message')
    .map((f) => SseMessageData.parse(JSON.parse(f.data)))
    .filter((d) => !d.done);

describe('several Sluice processes on one Redis', () => {
  it('a reply started on A resumes on B (SSE route and tRPC), exactly once; history is the same on both', async () => {
    const redis = await startRedis();
    if (!redis) return;
    const env = { REDIS_URL: redis.url, SIM_DELAY_MS: 25, RESUME_GRACE_MS: 5000 };
    const [a, b] = await Promise.all([startSluiceProcess(env), startSluiceProcess(env)]);

    const head = await readFrames(streamSseRoute(a.url, { message: PROMPT, session_id: 'x' }), 5);
    const tail = await readFrames(streamSseRoute(b.url, { message: PROMPT, session_id: 'x' }, { headers: { 'last-event-id': head.at(-1)!.id! } }));
    const deltas = deltasOf([...head, ...tail]);
    expect(deltas.map((d) => d.chunk_index)).toEqual(FULL.map((_, i) => i + 1));
    expect(deltas.map((d) => d.delta).join('')).toBe(FULL.join(''));
    expect(JSON.parse(tail.at(-1)!.data)).toEqual({ delta: '', done: true, total_chunks: FULL.length });

    // tRPC on B, resuming from event 10 of the same (finished) reply: events 11..40.
    const { client } = stockClient(b.url, 'ws');
    const events: unknown[] = [];
    await new Promise<void>((resolve, reject) => {
      client.chat.stream.subscribe(
        { message: PROMPT, sessionId: 'x', lastEventId: head[0]!.id!.replace(/:1$/, ':10') },
        { onData: ({ data }) => void events.push(data), onComplete: resolve, onError: reject },
      );
    });
    expect(events).toHaveLength(FULL.length - 10 + 1);
    expect(events.at(-1)).toEqual({ type: 'done', totalChunks: FULL.length, usage: expect.objectContaining({ estimated: true }) });

    const [ha, hb] = await Promise.all([history(a.url, 'x'), history(b.url, 'x')]);
    expect(ha).toEqual(hb);
    expect(ha.messages.map((m) => [m.role, m.status])).toEqual([
      ['user', 'complete'],
      ['assistant', 'complete'],
    ]);
    expect(await a.stop()).toBe(0);
    expect(await b.stop()).toBe(0);
  });

  it('a cancel sent to B stops the reply running on A', async () => {
    const redis = await startRedis();
    if (!redis) return;
    const env = { REDIS_URL: redis.url, SIM_DELAY_MS: 25, RESUME_GRACE_MS: 60_000 };
    const [a, b] = await Promise.all([startSluiceProcess(env), startSluiceProcess(env)]);
    const frames: SseFrame[] = [];
    for await (const frame of streamSseRoute(a.url, { message: PROMPT, session_id: 'c' })) {
      frames.push(frame);
      if (frames.length === 3) {
        const res = await fetch(`${b.url}/v1/chat/cancel`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ session_id: 'c' }),
        });
        expect(await res.json()).toEqual({ cancelled: true });
      }
    }
    expect(frames.at(-1)!.event).toBe('error');
    expect(frames.length).toBeLessThan(FULL.length);
    const stored = await history(b.url, 'c');
    expect(stored.messages[1]).toMatchObject({ status: 'interrupted' });
    expect(stored.messages[1]!.content).toBe(SseErrorData.parse(JSON.parse(frames.at(-1)!.data)).partial);
  });

  it('history and event logs survive a restart of Sluice', async () => {
    const redis = await startRedis();
    if (!redis) return;
    const env = { REDIS_URL: redis.url, SIM_DELAY_MS: 0 };
    const first = await startSluiceProcess(env);
    const turn1 = await readFrames(streamSseRoute(first.url, { message: 'turn one', session_id: 'p' }));
    expect(await first.stop('SIGTERM')).toBe(0);

    const second = await startSluiceProcess(env);
    const replay = await readFrames(streamSseRoute(second.url, { message: 'turn one', session_id: 'p' }, { headers: { 'last-event-id': turn1[29]!.id! } }));
    expect(replay.map((f) => f.id)).toEqual(turn1.slice(30).map((f) => f.id));
    await readFrames(streamSseRoute(second.url, { message: 'turn two', session_id: 'p' }));
    const stored = await history(second.url, 'p');
    expect(stored.messages.map((m) => [m.role, m.content.slice(0, 30)])).toEqual([
      ['user', 'turn one'],
      ['assistant', simulatedDeltas('turn one').join('').slice(0, 30)],
      ['user', 'turn two'],
      ['assistant', simulatedDeltas('turn two').join('').slice(0, 30)],
    ]);
  });

  it('an instance killed mid-reply: the client resumes elsewhere and gets a clear ending; history keeps the partial', async () => {
    const redis = await startRedis();
    if (!redis) return;
    const env = { REDIS_URL: redis.url, SIM_DELAY_MS: 30, RESUME_GRACE_MS: 5000, LIVENESS_TTL_MS: 1500 };
    const [a, b] = await Promise.all([startSluiceProcess(env), startSluiceProcess(env)]);
    const head = await readFrames(streamSseRoute(a.url, { message: PROMPT, session_id: 'k' }), 4);
    await a.stop('SIGKILL');
    const tail = await readFrames(streamSseRoute(b.url, { message: PROMPT, session_id: 'k' }, { headers: { 'last-event-id': head.at(-1)!.id! } }));
    const ending = tail.at(-1)!;
    expect(ending.event).toBe('error');
    const { partial } = SseErrorData.parse(JSON.parse(ending.data));
    expect(
      partial.startsWith(
        deltasOf(head)
          .map((d) => d.delta)
          .join(''),
      ),
    ).toBe(true);
    const stored = await history(b.url, 'k');
    expect(stored.messages).toHaveLength(2);
    expect(stored.messages[1]).toMatchObject({ role: 'assistant', status: 'interrupted', content: partial });
    // What the dead instance's reply consumed is kept too, as every interrupted reply's is: estimated.
    const tokens = (text: string): number => countTokens(text, { disallowedSpecial: new Set() });
    const usage = { promptTokens: 3 + 3 + tokens(PROMPT), completionTokens: tokens(partial), estimated: true };
    expect(stored.messages[1]!.usage).toEqual(usage);
    // The session is free again, and B keeps serving.
    const next = await readFrames(streamSseRoute(b.url, { message: 'after the crash', session_id: 'k' }));
    expect(JSON.parse(next.at(-1)!.data)).toMatchObject({ done: true });
  });
});

describe('Redis outage', () => {
  it('requests fail with a clear 503 while Redis is away, and work again when it is back', async () => {
    const redis = await startRedis();
    if (!redis) return;
    const server = await startServer({ REDIS_URL: redis.url });
    const stream = () =>
      fetch(`${server.url}/v1/chat/stream`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ message: 'hello', session_id: 'o' }),
      });
    expect((await stream()).status).toBe(200);

    await redis.stop();
    await vi.waitFor(async () => {
      const res = await stream();
      expect(res.status).toBe(503);
      expect(ErrorBody.parse(await res.json()).error).toMatchObject({ code: 'unavailable', message: expect.stringMatching(/store is unavailable/) });
      // Retryable, and when: a client (the openai SDK among them) waits a second rather than guessing.
      expect(res.headers.get('retry-after')).toBe('1');
    });
    const completion = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', [SLUICE_SESSION_HEADER]: 'o' },
      body: JSON.stringify({ model: 'sluice-sim', messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(completion.status).toBe(503);
    expect(completion.headers.get('retry-after')).toBe('1');
    const historyDown = await fetch(`${server.url}/v1/sessions/o/messages`);
    expect(historyDown.status).toBe(503);
    const { client } = stockClient(server.url, 'ws');
    const error = await client.chat.history.query({ sessionId: 'o' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TRPCClientError);
    expect((error as TRPCClientError<AppRouter>).data?.code).toBe('SERVICE_UNAVAILABLE');

    await redis.start();
    await vi.waitFor(async () => expect((await stream()).status).toBe(200), { timeout: 10_000, interval: 200 });
  });
});
