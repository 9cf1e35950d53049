import { describe, expect, it, vi } from 'vitest';
import { createSimulatedProvider } from '../server/core/providers/simulated.ts';
import { SessionHistory } from '../shared/index.ts';
import { recordingProvider } from './helpers/recording-provider.ts';
import { startServer, timerCount, expectTimersBackTo } from './helpers/server.ts';
import { streamSseRoute } from './helpers/sse.ts';
import { collectStream, stockClient } from './helpers/trpc-clients.ts';

type Way = 'sse-route' | 'trpc-ws' | 'trpc-sse';

async function disconnectAfterThree(url: string, way: Way, sessionId: string): Promise<string> {
  if (way === 'sse-route') {
    let text = '';
    let n = 0;
    for await (const frame of streamSseRoute(url, { message: 'leave early', session_id: sessionId })) {
      text += JSON.parse(frame.data).delta;
      if (++n === 3) break; // breaking closes the response body: the TCP connection goes away
    }
    return text;
  }
  const { client, close } = stockClient(url, way === 'trpc-ws' ? 'ws' : 'sse');
  const { events } = await collectStream(client, { message: 'leave early', sessionId }, (_event, unsubscribe) => {
    if (way === 'trpc-sse') {
      if (_event.type === 'delta' && _event.index === 3) unsubscribe(); // closes the EventSource
    } else if (_event.type === 'delta' && _event.index === 3) void close(); // drops the socket
  });
  return events.map((e) => (e.type === 'delta' ? e.delta : '')).join('');
}

describe.each<Way>(['sse-route', 'trpc-ws', 'trpc-sse'])('client disconnect on %s', (way) => {
  it('aborts the provider, stores the partial as interrupted, leaves nothing running', async () => {
    const timersBefore = timerCount();
    const recorder = recordingProvider(createSimulatedProvider({ delayMs: 25 }));
    const server = await startServer({ RESUME_GRACE_MS: 0 }, { provider: recorder.provider });
    const received = await disconnectAfterThree(server.url, way, 'drop');
    expect(received.length).toBeGreaterThan(0);

    await vi.waitFor(() => {
      expect(recorder.calls[0]?.aborted).toBe(true);
      expect(recorder.calls[0]?.settled).toBe(true);
    });
    const call = recorder.calls[0]!;
    expect(call.yielded).toBeLessThan(20); // the reply has 37 + 2 words: it was cut short
    await vi.waitFor(() => expect(server.sluice.service.runningCount).toBe(0));
    expect(server.sluice.service.listenerCount).toBe(0);

    const history = SessionHistory.parse(await (await fetch(`${server.url}/v1/sessions/drop/messages`)).json());
    expect(history.messages).toHaveLength(2);
    const reply = history.messages[1]!;
    expect(reply.status).toBe('interrupted');
    expect(reply.content.startsWith(received)).toBe(true);
    expect(reply.content.split(' ').length - 1).toBeLessThan(39);
    await server.close();
    await expectTimersBackTo(timersBefore);
  });
});
