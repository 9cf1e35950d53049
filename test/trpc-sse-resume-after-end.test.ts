import { createTRPCClient, httpSubscriptionLink } from '@trpc/client';
import { EventSource } from 'eventsource';
import superjson from 'superjson';
import { describe, expect, it } from 'vitest';
import type { AppRouter } from '../server/router-type.ts';
import { startServer } from './helpers/server.ts';
import { referenceServer } from './helpers/trpc-reference.ts';
import { parseSse, rawRequest } from './helpers/sse.ts';

// A client that resumes a reply from its last event (the terminal `done`) has nothing left to
// read. tRPC's own SSE producer (stream/sse.ts, sseStreamProducer: `connected` is yielded first,
// `return` after the data iterable ends) answers `connected` then `return`, and
// httpSubscriptionLink completes the subscription on `return`. An answer with neither is, for an
// EventSource, a stream that dropped: it reconnects with the same Last-Event-ID, for ever.

const query = (input: unknown): string => `input=${encodeURIComponent(JSON.stringify({ json: input }))}`;

/** Streams a whole reply over tRPC's SSE wire; returns the id of its last (terminal) event. */
async function terminalId(base: string, sessionId: string): Promise<string> {
  const res = await rawRequest(`${base}/trpc/chat.stream?${query({ message: 'hello', sessionId })}`, { method: 'GET' });
  const frames = parseSse(res.body.toString());
  expect(frames.at(-1)?.event).toBe('return');
  const id = frames.filter((f) => f.id !== undefined).at(-1)!.id!;
  expect(JSON.parse(frames.find((f) => f.id === id)!.data)).toMatchObject({ json: { type: 'done' } });
  return id;
}

describe('tRPC over SSE: resuming a reply after its last event', () => {
  it('is answered `connected` then `return`, as tRPC answers it, not an empty 200', async () => {
    const server = await startServer({ SSE_PING_MS: 0, RESUME_GRACE_MS: 60_000 });
    const reference = await referenceServer(server.sluice);
    const answers: Record<string, string> = {};
    for (const [name, base] of [
      ['sluice', server.url],
      ['trpc', reference],
    ] as const) {
      const sessionId = `resume-end-${name}`;
      const id = await terminalId(base, sessionId);
      const res = await rawRequest(`${base}/trpc/chat.stream?${query({ message: 'hello', sessionId })}`, { method: 'GET', headers: { 'last-event-id': id } });
      expect(res.status, name).toBe(200);
      answers[name] = parseSse(res.body.toString())
        .map((f) => f.event ?? 'message')
        .join(',');
    }
    expect(answers.trpc).toBe('connected,return');
    expect(answers.sluice).toBe(answers.trpc);
  });

  it('completes the stock httpSubscriptionLink subscription instead of making it reconnect', async () => {
    const server = await startServer({ SSE_PING_MS: 0, RESUME_GRACE_MS: 60_000 });
    const id = await terminalId(server.url, 'resume-end-link');
    let requests = 0;
    let secondRequest: () => void = () => undefined;
    const reconnected = new Promise<'reconnected'>((resolve) => (secondRequest = () => resolve('reconnected')));
    const client = createTRPCClient<AppRouter>({
      links: [
        httpSubscriptionLink({
          url: `${server.url}/trpc`,
          transformer: superjson,
          EventSource,
          eventSourceOptions: () => ({
            fetch: (url, init) => {
              if (++requests === 2) secondRequest();
              return fetch(url, init);
            },
          }),
        }),
      ],
    });
    const received: unknown[] = [];
    let unsubscribe: () => void = () => undefined;
    const completed = new Promise<'completed'>((resolve, reject) => {
      const sub = client.chat.stream.subscribe(
        { message: 'hello', sessionId: 'resume-end-link', lastEventId: id },
        { onData: (data) => received.push(data), onComplete: () => resolve('completed'), onError: reject },
      );
      unsubscribe = () => sub.unsubscribe();
    });
    try {
      const outcome = await Promise.race([completed, reconnected]);
      expect({ outcome, requests, received }).toEqual({ outcome: 'completed', requests: 1, received: [] });
    } finally {
      unsubscribe();
    }
  });
});
