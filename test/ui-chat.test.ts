import { DefaultChatTransport, readUIMessageStream, type UIMessage, type UIMessageChunk } from 'ai';
import { describe, expect, it, vi } from 'vitest';
import { uiChatFetch } from '../client/ui-chat-fetch.ts';
import type { Provider } from '../server/core/providers/provider.ts';
import { createSimulatedProvider, simulatedDeltas } from '../server/core/providers/simulated.ts';
import { SessionHistory, UIChatChunk, type UIChatMetadata } from '../shared/index.ts';
import { recordingProvider } from './helpers/recording-provider.ts';
import { startRedis } from './helpers/redis.ts';
import { startServer, type TestServer } from './helpers/server.ts';
import { startTcpProxy, type TcpProxy } from './helpers/tcp-proxy.ts';

// The AI SDK's own client side (the `ai` package, v6) against a real Sluice: DefaultChatTransport
// is what `useChat` sends through.

type Message = UIMessage<UIChatMetadata>;
const reply = (prompt: string): string => simulatedDeltas(prompt).join('');
const user = (id: string, text: string): Message => ({ id, role: 'user', parts: [{ type: 'text', text }] });
const transportFor = (server: TestServer, options: ConstructorParameters<typeof DefaultChatTransport<Message>>[0] = {}) =>
  new DefaultChatTransport<Message>({ api: `${server.url}/v1/ui/chat`, ...options });

async function readAll(stream: ReadableStream<UIMessageChunk>): Promise<UIMessageChunk[]> {
  const chunks: UIMessageChunk[] = [];
  for await (const chunk of stream as unknown as AsyncIterable<UIMessageChunk>) chunks.push(chunk);
  return chunks;
}

/** The message the AI SDK builds from a stream (what useChat shows). */
async function finalMessage(stream: ReadableStream<UIMessageChunk>): Promise<Message> {
  let last: Message | undefined;
  for await (const message of readUIMessageStream<Message>({ stream })) last = message;
  return last!;
}

const textOf = (message: Message): string => message.parts.map((p) => (p.type === 'text' ? p.text : '')).join('');
const deltasOf = (chunks: readonly UIMessageChunk[]): string => chunks.map((c) => (c.type === 'text-delta' ? c.delta : '')).join('');

/**
 * Reads a stream until `n` text deltas have come, then `cut`s it: aborting its request (what
 * useChat's stop() does) or dropping its connection (a network failure, or a page that reloads:
 * Node's fetch keeps the socket of an aborted request open for seconds, so the server would not
 * see that as a client that left).
 */
async function readThenCut(stream: ReadableStream<UIMessageChunk>, n: number, cut: AbortController | TcpProxy): Promise<UIMessageChunk[]> {
  const chunks: UIMessageChunk[] = [];
  const reader = stream.getReader();
  while (chunks.filter((c) => c.type === 'text-delta').length < n) {
    const { done, value } = await reader.read();
    if (done) throw new Error('the stream ended before it was cut');
    chunks.push(value);
  }
  if (cut instanceof AbortController) cut.abort();
  else cut.dropAll();
  await reader.cancel().catch(() => undefined);
  return chunks;
}

async function history(server: TestServer, chatId: string): Promise<SessionHistory> {
  return SessionHistory.parse(await (await fetch(`${server.url}/v1/sessions/${chatId}/messages`)).json());
}

const send = (transport: DefaultChatTransport<Message>, chatId: string, messages: Message[], abortSignal?: AbortSignal) =>
  transport.sendMessages({ chatId, messages, trigger: 'submit-message', messageId: undefined, abortSignal });

describe('POST /v1/ui/chat with the AI SDK DefaultChatTransport', () => {
  it('streams a turn as UI message chunks; a second turn uses the stored history, not the messages sent; history has both turns', async () => {
    const recorder = recordingProvider(createSimulatedProvider({ delayMs: 0 }));
    const server = await startServer({}, { provider: recorder.provider });
    const transport = transportFor(server);

    const chunks = await readAll(await send(transport, 'ui-turns', [user('u1', 'explain caching')]));
    for (const chunk of chunks) UIChatChunk.parse(chunk);
    const messageId = (chunks[0] as { messageId: string }).messageId;
    expect(chunks.map((c) => c.type)).toEqual(['start', 'text-start', ...simulatedDeltas('explain caching').map(() => 'text-delta'), 'text-end', 'finish']);
    expect(deltasOf(chunks)).toBe(reply('explain caching'));
    expect(chunks.at(-1)).toEqual({
      type: 'finish',
      finishReason: 'stop',
      messageMetadata: {
        status: 'complete',
        usage: { inputTokens: expect.any(Number), outputTokens: expect.any(Number), totalTokens: expect.any(Number), estimated: true },
      },
    });

    // The client sends its whole conversation, with a made-up earlier answer: Sluice reads only the new turn.
    const first: Message = { id: messageId, role: 'assistant', parts: [{ type: 'text', text: 'something the server never said' }] };
    const second = await finalMessage(await send(transport, 'ui-turns', [user('u1', 'explain caching'), first, user('u2', 'and now?')]));
    expect(textOf(second)).toBe(reply('and now?'));
    expect(second.metadata).toMatchObject({ status: 'complete', usage: { estimated: true } });
    expect(second.id).not.toBe(messageId);

    expect(recorder.calls[1]!.messages.map((m) => m.content)).toEqual(['explain caching', reply('explain caching'), 'and now?']);
    const { messages } = await history(server, 'ui-turns');
    expect(messages.map((m) => [m.role, m.status, m.content])).toEqual([
      ['user', 'complete', 'explain caching'],
      ['assistant', 'complete', reply('explain caching')],
      ['user', 'complete', 'and now?'],
      ['assistant', 'complete', reply('and now?')],
    ]);
    expect(second.metadata!.usage).toEqual({
      inputTokens: messages[3]!.usage!.promptTokens,
      outputTokens: messages[3]!.usage!.completionTokens,
      totalTokens: messages[3]!.usage!.promptTokens + messages[3]!.usage!.completionTokens,
      estimated: true,
    });
  });

  it('reconnectToStream resumes a cut reply from its start (a replay, as DefaultChatTransport expects); a finished chat has nothing to resume', async () => {
    // Slow tokens and a long resume window: the cut reply runs on for the client to come back.
    const server = await startServer({ SIM_DELAY_MS: 20, RESUME_GRACE_MS: 30_000 });
    const transport = transportFor(server);
    const proxy = await startTcpProxy(server.url);
    const head = await readThenCut(await send(transportFor(server, { api: `${proxy.url}/v1/ui/chat` }), 'ui-resume', [user('u1', 'resume me')]), 5, proxy);
    expect(deltasOf(head)).toBe(simulatedDeltas('resume me').slice(0, 5).join(''));
    // The server saw its client leave; the reply runs on in the resume window.
    await vi.waitFor(() => expect(server.sluice.service.listenerCount).toBe(0));
    expect(server.sluice.service.runningCount).toBe(1);

    const resumed = await transport.reconnectToStream({ chatId: 'ui-resume' });
    expect(resumed).not.toBeNull();
    const chunks = await readAll(resumed!);
    // The same message (its id is the reply's), every delta from the first, exactly once.
    expect(chunks[0]).toEqual(head[0]);
    expect(chunks.filter((c) => c.type === 'start' || c.type === 'text-start')).toHaveLength(2);
    expect(deltasOf(chunks)).toBe(reply('resume me'));
    expect(chunks.at(-1)).toMatchObject({ type: 'finish', messageMetadata: { status: 'complete' } });

    expect(await transport.reconnectToStream({ chatId: 'ui-resume' })).toBeNull();
    expect(await transport.reconnectToStream({ chatId: 'never-used' })).toBeNull();
    const { messages } = await history(server, 'ui-resume');
    expect(messages.map((m) => [m.role, m.status, m.content])).toEqual([
      ['user', 'complete', 'resume me'],
      ['assistant', 'complete', reply('resume me')],
    ]);
  });

  it('a reply cancelled elsewhere ends with abort, then finish with the partial usage; useChat-style reading keeps the partial text', async () => {
    const server = await startServer({ SIM_DELAY_MS: 20, RESUME_GRACE_MS: 30_000 });
    const transport = transportFor(server);
    const stream = await send(transport, 'ui-cancel', [user('u1', 'cancel me')]);
    const [forChunks, forMessage] = stream.tee();
    const message = finalMessage(forMessage);
    const chunks: UIMessageChunk[] = [];
    for await (const chunk of forChunks as unknown as AsyncIterable<UIMessageChunk>) {
      chunks.push(chunk);
      if (chunks.filter((c) => c.type === 'text-delta').length === 3 && !chunks.some((c) => c.type === 'abort')) {
        // The documented cancel route, from another client.
        await fetch(`${server.url}/v1/chat/cancel`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"session_id": "ui-cancel"}' });
      }
    }
    expect(chunks.slice(-3).map((c) => c.type)).toEqual(['text-end', 'abort', 'finish']);
    expect(chunks.at(-2)).toEqual({ type: 'abort', reason: 'cancelled' });
    const partial = deltasOf(chunks);
    const { messages } = await history(server, 'ui-cancel');
    expect(messages[1]).toMatchObject({ status: 'interrupted', content: partial });
    expect(chunks.at(-1)).toEqual({
      type: 'finish',
      finishReason: 'other',
      messageMetadata: {
        status: 'interrupted',
        usage: {
          inputTokens: messages[1]!.usage!.promptTokens,
          outputTokens: messages[1]!.usage!.completionTokens,
          totalTokens: expect.any(Number),
          estimated: true,
        },
      },
    });
    expect(textOf(await message)).toBe(partial);
  });

  it('refuses what it cannot take before any stream starts: the AI SDK throws with the body, which names the problem', async () => {
    const key = 'ui-chat-test-key-0123456789';
    const server = await startServer({ API_KEYS: key, MAX_MESSAGE_CHARS: 50, SIM_DELAY_MS: 20, RESUME_GRACE_MS: 30_000 });
    const auth = { authorization: `Bearer ${key}` };
    const transport = transportFor(server, { headers: auth });

    await expect(send(transportFor(server), 'ui-bad', [user('u1', 'hi')])).rejects.toThrow(/"unauthorized"/);
    await expect(transportFor(server).reconnectToStream({ chatId: 'ui-bad' })).rejects.toThrow(/"unauthorized"/);
    await expect(send(transport, 'not a chat id', [user('u1', 'hi')])).rejects.toThrow(/"id: must be 1-128 characters/);
    await expect(send(transport, 'ui-bad', [user('u1', 'x'.repeat(51))])).rejects.toThrow(/message: must be at most 50 characters/);
    await expect(send(transport, 'ui-bad', [{ id: 'a', role: 'assistant', parts: [{ type: 'text', text: 'hi' }] }])).rejects.toThrow(
      /messages.0.role: the last message must be the user's new message/,
    );
    await expect(send(transport, 'ui-bad', [{ id: 'f', role: 'user', parts: [{ type: 'file', mediaType: 'image/png', url: 'data:,' }] }])).rejects.toThrow(
      /messages.0.parts.0: only text parts are supported, got \\"file\\"/,
    );
    await expect(transport.reconnectToStream({ chatId: 'bad id' })).rejects.toThrow(/"chatId: must be/);

    // One reply at a time per chat, as on every route.
    const controller = new AbortController();
    const running = await send(transport, 'ui-busy', [user('u1', 'first')], controller.signal);
    await expect(send(transport, 'ui-busy', [user('u2', 'second')])).rejects.toThrow(/"session_busy"/);
    expect(await (await fetch(`${server.url}/v1/ui/chat/ui-busy/stop`, { method: 'POST', headers: auth })).json()).toEqual({ cancelled: true });
    await readAll(running);
    const raw = await fetch(`${server.url}/v1/ui/chat`, { method: 'POST', headers: { ...auth, 'content-type': 'text/plain' }, body: '{}' });
    expect(raw.status).toBe(415);
  });

  it("refuses an edit of a sent message (useChat's sendMessage with a messageId): history keeps what was said, and is not rewritten behind the page", async () => {
    // The UI route hunt: the edit was taken for a new last turn, so the page showed the edited
    // branch while history (and the model's context) held both.
    const server = await startServer({ SIM_DELAY_MS: 0 });
    const transport = transportFor(server);
    await readAll(await send(transport, 'ui-edit', [user('u1', 'my name is Ann')]));
    const edit = transport.sendMessages({
      chatId: 'ui-edit',
      messages: [user('u1', 'my name is Bob')],
      trigger: 'submit-message',
      messageId: 'u1',
      abortSignal: undefined,
    });
    await expect(edit).rejects.toThrow(/"messageId: editing a sent message is not supported/);
    expect((await history(server, 'ui-edit')).messages.map((m) => m.content.slice(0, 14))).toEqual(['my name is Ann', 'Based on your ']);
  });

  it('the stop route refuses a body past MAX_BODY_BYTES, as every route does (the UI route hunt: it answered 200 to any size)', async () => {
    const server = await startServer({ MAX_BODY_BYTES: 1024 });
    const stop = await fetch(`${server.url}/v1/ui/chat/ui-stop/stop`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: 'x'.repeat(4096),
    });
    expect(stop.status).toBe(413);
    expect((await fetch(`${server.url}/v1/ui/chat/ui-stop/stop`, { method: 'POST' })).status).toBe(200);
  });
});

describe('uiChatFetch: stop() stops the reply on the server', () => {
  /** A reply that would run on for a minute if only its connection closed. */
  const slowServer = () => startServer({ SIM_DELAY_MS: 25, RESUME_GRACE_MS: 60_000 });

  it('aborting the POST (useChat stop()) cancels the reply at once; a message sent right after it goes through', async () => {
    // A provider that takes a while to notice a stop (as an upstream may): it finishes the token it
    // is on, 100 ms, before the reply ends and the session is free.
    const simulator = createSimulatedProvider({ delayMs: 100 });
    const slowToStop: Provider = {
      name: 'slow-to-stop',
      stream: (request) => simulator.stream({ messages: request.messages, signal: new AbortController().signal }),
    };
    const server = await startServer({ RESUME_GRACE_MS: 60_000 }, { provider: slowToStop });
    const transport = transportFor(server, { fetch: uiChatFetch() });
    const controller = new AbortController();
    const head = await readThenCut(await send(transport, 'ui-stop', [user('u1', 'stop me')], controller.signal), 2, controller);
    // No wait: the next request goes out after the stop's answer, which comes once the reply has ended.
    const again = new AbortController();
    await readThenCut(await send(transport, 'ui-stop', [user('u2', 'hi')], again.signal), 1, again);
    await vi.waitFor(() => expect(server.sluice.service.runningCount).toBe(0));
    const { messages } = await history(server, 'ui-stop');
    expect(messages.map((m) => [m.role, m.status])).toEqual([
      ['user', 'complete'],
      ['assistant', 'interrupted'],
      ['user', 'complete'],
      ['assistant', 'interrupted'],
    ]);
    expect(messages[1]!.content.startsWith(deltasOf(head))).toBe(true);
    expect(messages[1]!.content.length).toBeLessThan(reply('stop me').length);
  });

  it('aborting a resumed stream cancels the reply too; a plain connection drop does not', async () => {
    const server = await slowServer();
    const proxy = await startTcpProxy(server.url);
    const stopping = transportFor(server, { fetch: uiChatFetch() });
    // A dropped connection (a reload) is not a stop: the reply runs on.
    await readThenCut(await send(transportFor(server, { api: `${proxy.url}/v1/ui/chat` }), 'ui-stop-resumed', [user('u1', 'stop me later')]), 2, proxy);
    await vi.waitFor(() => expect(server.sluice.service.listenerCount).toBe(0));
    expect(server.sluice.service.runningCount).toBe(1);
    const second = new AbortController();
    const resumed = await stopping.reconnectToStream({ chatId: 'ui-stop-resumed', abortSignal: second.signal });
    await readThenCut(resumed!, 4, second);
    await vi.waitFor(() => expect(server.sluice.service.runningCount).toBe(0));
    const { messages } = await history(server, 'ui-stop-resumed');
    expect(messages[1]!.status).toBe('interrupted');
  });

  it('a resume request that useChat replaces with a newer one is not a stop', async () => {
    const server = await startServer({ SIM_DELAY_MS: 10, RESUME_GRACE_MS: 60_000 });
    const transport = transportFor(server, { fetch: uiChatFetch() });
    const proxy = await startTcpProxy(server.url);
    await readThenCut(await send(transportFor(server, { api: `${proxy.url}/v1/ui/chat` }), 'ui-twice', [user('u1', 'resume twice')]), 2, proxy);
    // What useChat does on a second resumeStream() while a resumed stream flows: abort the first
    // resume request, then reconnect.
    const older = new AbortController();
    const olderStream = await transport.reconnectToStream({ chatId: 'ui-twice', abortSignal: older.signal });
    older.abort();
    const newer = await transport.reconnectToStream({ chatId: 'ui-twice' });
    await olderStream!.cancel().catch(() => undefined);
    const message = await finalMessage(newer!);
    expect(textOf(message)).toBe(reply('resume twice'));
    expect(message.metadata?.status).toBe('complete');
    expect((await history(server, 'ui-twice')).messages[1]!.status).toBe('complete');
  });
});

describe('several instances on one Redis', () => {
  it('a reply started on A resumes on B from its start, and a stop through B cancels it on A', async () => {
    const redis = await startRedis();
    if (!redis) return;
    const settings = { REDIS_URL: redis.url, SIM_DELAY_MS: 25, RESUME_GRACE_MS: 60_000 };
    const [a, b] = await Promise.all([startServer(settings), startServer(settings)]);
    const proxy = await startTcpProxy(a.url);
    const head = await readThenCut(await send(transportFor(a, { api: `${proxy.url}/v1/ui/chat` }), 'ui-redis', [user('u1', 'scale me')]), 3, proxy);

    const onB = transportFor(b, { fetch: uiChatFetch() });
    expect(b.sluice.service.runningCount).toBe(0);
    const second = new AbortController();
    const resumed = await onB.reconnectToStream({ chatId: 'ui-redis', abortSignal: second.signal });
    const chunks = await readThenCut(resumed!, 6, second);
    expect(chunks[0]).toEqual(head[0]);
    expect(deltasOf(chunks)).toBe(simulatedDeltas('scale me').slice(0, 6).join(''));

    await vi.waitFor(() => expect(a.sluice.service.runningCount).toBe(0));
    const { messages } = await history(b, 'ui-redis');
    expect(messages.map((m) => [m.role, m.status])).toEqual([
      ['user', 'complete'],
      ['assistant', 'interrupted'],
    ]);
    expect(await onB.reconnectToStream({ chatId: 'ui-redis' })).toBeNull();
  });
});
