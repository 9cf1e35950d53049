import { TRPCClientError } from '@trpc/client';
import type { AppRouter } from '../server/router-type.ts';
import { describe, expect, it } from 'vitest';
import { simulatedDeltas } from '../server/core/providers/simulated.ts';
import { createSimulatedProvider } from '../server/core/providers/simulated.ts';
import { SessionHistory, StreamEvent } from '../shared/index.ts';
import { recordingProvider } from './helpers/recording-provider.ts';
import { startServer } from './helpers/server.ts';
import { collectStream, stockClient, type Kind } from './helpers/trpc-clients.ts';

describe.each<Kind>(['ws', 'sse'])('tRPC over %s', (kind) => {
  it('chat.stream yields tracked, typed delta events and a done event', async () => {
    const { url } = await startServer();
    const { client } = stockClient(url, kind);
    const { ids, events } = await collectStream(client, { message: 'explain caching', sessionId: 's1' });
    for (const event of events) StreamEvent.parse(event);
    const expected = simulatedDeltas('explain caching');
    expect(expected).toHaveLength(39);
    expect(events.slice(0, -1)).toEqual(expected.map((delta, i) => ({ type: 'delta', delta, index: i + 1 })));
    // No usage from the simulator: Sluice's own count, marked estimated.
    expect(events.at(-1)).toEqual({
      type: 'done',
      totalChunks: 39,
      usage: { promptTokens: expect.any(Number), completionTokens: expect.any(Number), estimated: true },
    });
    const generation = ids[0]!.split(':')[0];
    expect(ids).toEqual(events.map((_, i) => `${generation}:${i + 1}`));
  });

  it('keeps a multi-turn history: the provider sees the first turn, chat.history returns four messages', async () => {
    const recorder = recordingProvider(createSimulatedProvider({ delayMs: 0 }));
    const { url } = await startServer({}, { provider: recorder.provider });
    const { client } = stockClient(url, kind);
    await collectStream(client, { message: 'first question', sessionId: 'multi' });
    await collectStream(client, { message: 'second question', sessionId: 'multi' });

    expect(recorder.calls).toHaveLength(2);
    expect(recorder.calls[1]!.messages.map((m) => [m.role, m.content])).toEqual([
      ['user', 'first question'],
      ['assistant', simulatedDeltas('first question').join('')],
      ['user', 'second question'],
    ]);
    const history = SessionHistory.parse(await client.chat.history.query({ sessionId: 'multi' }));
    expect(history.sessionId).toBe('multi');
    expect(history.messages.map((m) => [m.role, m.status])).toEqual([
      ['user', 'complete'],
      ['assistant', 'complete'],
      ['user', 'complete'],
      ['assistant', 'complete'],
    ]);
    expect(history.messages[3]!.content).toBe(simulatedDeltas('second question').join(''));
    // The REST route answers the same shape.
    const rest = SessionHistory.parse(await (await fetch(`${url}/v1/sessions/multi/messages`)).json());
    expect(rest).toEqual(history);
  });

  it('rejects bad input with a typed BAD_REQUEST before any generation starts', async () => {
    const server = await startServer({ MAX_MESSAGE_CHARS: 10 });
    const { client } = stockClient(server.url, kind);
    for (const input of [{ message: '' }, { message: 'x'.repeat(11) }, { message: 'ok', sessionId: 'bad id!' }]) {
      const error = await collectStream(client, input).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(TRPCClientError);
      expect((error as TRPCClientError<AppRouter>).data?.code).toBe('BAD_REQUEST');
    }
    expect(await client.health.query()).toEqual({ status: 'ok' });
  });
});
