import { TRPCClientError } from '@trpc/client';
import type { AppRouter } from '../server/router-type.ts';
import { describe, expect, it } from 'vitest';
import { ErrorBody } from '../shared/index.ts';
import { rawRequest, streamSseRoute, type SseFrame } from './helpers/sse.ts';
import { startServer } from './helpers/server.ts';
import { collectStream, stockClient } from './helpers/trpc-clients.ts';

describe('one generation per session', () => {
  it('a busy session gets 409 on the SSE route and CONFLICT over tRPC; other sessions are unaffected', async () => {
    const { url } = await startServer({ SIM_DELAY_MS: 20 });
    const first = streamSseRoute(url, { message: 'long one', session_id: 'busy' });
    expect((await first.next()).value).toMatchObject({ event: 'message' });

    const res = await rawRequest(`${url}/v1/chat/stream`, {
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ message: 'again', session_id: 'busy' }),
    });
    expect(res.status).toBe(409);
    expect(ErrorBody.parse(JSON.parse(res.body.toString())).error.code).toBe('session_busy');

    const { client } = stockClient(url, 'ws');
    const error = await collectStream(client, { message: 'again', sessionId: 'busy' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TRPCClientError);
    expect((error as TRPCClientError<AppRouter>).data?.code).toBe('CONFLICT');

    const other = await collectStream(client, { message: 'other', sessionId: 'free' });
    expect(other.events.at(-1)).toMatchObject({ type: 'done' });

    let last: SseFrame | undefined;
    for await (const frame of first) last = frame;
    expect(JSON.parse(last!.data)).toMatchObject({ done: true });
    // Once the reply is done the session takes the next message.
    const next = await collectStream(client, { message: 'next', sessionId: 'busy' });
    expect(next.events.at(-1)).toMatchObject({ type: 'done' });
  });
});
