import { afterEach, describe, expect, it, vi } from 'vitest';
import { chatClientTransport, closeChatClient, createChatClient, streamChat, type ChatClient } from '../client/index.ts';
import { createSimulatedProvider, simulatedDeltas } from '../server/core/providers/simulated.ts';
import type { StreamEvent } from '../shared/index.ts';
import { recordingProvider } from './helpers/recording-provider.ts';
import { startServer } from './helpers/server.ts';

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

  it('validates its options with a precise message', () => {
    expect(() => createChatClient({ url: 'localhost:8000' })).toThrow(/http: or https:|absolute URL/);
    expect(() => createChatClient({ url: 'http://x', transport: 'smoke' as never })).toThrow(/'ws', 'sse' or 'auto'/);
    expect(() => createChatClient({ url: 'http://x', wsConnectTimeoutMs: -1 })).toThrow(/wsConnectTimeoutMs/);
  });
});
