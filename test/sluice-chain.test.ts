import OpenAI from 'openai';
import { describe, expect, it } from 'vitest';
import { createChatClient, closeChatClient, streamChat } from '../client/index.ts';
import { SIMULATED_MODEL_ID } from '../server/core/providers/simulated.ts';
import { createSimulatedProvider, simulatedDeltas } from '../server/core/providers/simulated.ts';
import { SessionHistory, StreamEvent } from '../shared/index.ts';
import { recordingProvider } from './helpers/recording-provider.ts';
import { startServer } from './helpers/server.ts';
import { streamSseRoute } from './helpers/sse.ts';
import { collectStream, stockClient } from './helpers/trpc-clients.ts';

/**
 * Sluice in front of Sluice: the back instance runs the simulator (with usage); the front one uses
 * the OpenAI-compatible provider pointed at the back one's /v1. The front's transports must carry
 * the simulator's reply exactly as the back one would.
 */
async function chain(frontSettings: Record<string, string | number> = {}) {
  const recorder = recordingProvider(createSimulatedProvider({ delayMs: 0, usage: true }));
  const back = await startServer({}, { provider: recorder.provider });
  const front = await startServer({
    LLM_PROVIDER: 'openai',
    OPENAI_BASE_URL: `${back.url}/v1`,
    LLM_MODEL: SIMULATED_MODEL_ID,
    ...frontSettings,
  });
  return { back, front, calls: recorder.calls };
}

const words = (prompt: string) => simulatedDeltas(prompt);
// The simulator's word-mode usage: the words of every message sent, and one per delta.
const usageFor = (prompt: string) => ({ promptTokens: prompt.split(/\s+/).length, completionTokens: words(prompt).length });

describe('Sluice in front of Sluice', () => {
  it('its SSE route streams the same deltas, done event and history as the simulator behind it', async () => {
    const { back, front } = await chain();
    const frames = [];
    for await (const frame of streamSseRoute(front.url, { message: 'explain caching', session_id: 'chain' })) frames.push(frame);
    const data = frames.map((f) => JSON.parse(f.data));
    expect(frames.every((f) => f.event === 'message')).toBe(true);
    expect(data.slice(0, -1).map((d) => d.delta)).toEqual(words('explain caching'));
    expect(data.at(-1)).toEqual({ delta: '', done: true, total_chunks: 39 });

    const history = SessionHistory.parse(await (await fetch(`${front.url}/v1/sessions/chain/messages`)).json());
    expect(history.messages[1]).toMatchObject({
      role: 'assistant',
      content: words('explain caching').join(''),
      status: 'complete',
      // The upstream's usage (include_usage) is kept with the reply.
      usage: usageFor('explain caching'),
    });
    // The back instance served it statelessly: nothing in its own history.
    const backHistory = SessionHistory.parse(await (await fetch(`${back.url}/v1/sessions/chain/messages`)).json());
    expect(backHistory.messages).toEqual([]);
  });

  it.each(['ws', 'sse'] as const)('its tRPC over %s yields the same events, usage included, across a multi-turn session', async (kind) => {
    const { front, calls } = await chain({ LLM_SYSTEM_PROMPT: 'You are terse.' });
    const { client } = stockClient(front.url, kind);
    const first = await collectStream(client, { message: 'first question', sessionId: 'turns' });
    const second = await collectStream(client, { message: 'second question', sessionId: 'turns' });
    for (const { events } of [first, second]) for (const event of events) StreamEvent.parse(event);

    expect(second.events.slice(0, -1)).toEqual(words('second question').map((delta, i) => ({ type: 'delta', delta, index: i + 1 })));
    const done = second.events.at(-1);
    expect(done).toMatchObject({ type: 'done', totalChunks: 39 });
    // The back instance counted the system prompt and the whole conversation it was sent.
    expect(done).toHaveProperty('usage.completionTokens', 39);

    // The back instance received the configured system prompt, then the session's history.
    expect(calls[1]!.messages.map((m) => [m.role, m.content])).toEqual([
      ['system', 'You are terse.'],
      ['user', 'first question'],
      ['assistant', words('first question').join('')],
      ['user', 'second question'],
    ]);
  });

  it('the typed client (auto transport) streams the same reply through the chain', async () => {
    const { front } = await chain();
    const client = createChatClient({ url: front.url, transport: 'auto' });
    const events: StreamEvent[] = [];
    for await (const event of streamChat(client, { message: 'explain caching', sessionId: 'typed' })) events.push(event);
    await closeChatClient(client);
    expect(events.filter((e) => e.type === 'delta').map((e) => (e.type === 'delta' ? e.delta : ''))).toEqual(words('explain caching'));
    expect(events.at(-1)).toEqual({ type: 'done', totalChunks: 39, usage: usageFor('explain caching') });
  });

  it("its own OpenAI route, driven by the SDK, streams the back instance's reply and usage", async () => {
    const { front } = await chain();
    const client = new OpenAI({ baseURL: `${front.url}/v1`, apiKey: 'x', maxRetries: 0 });
    const stream = await client.chat.completions.create({
      model: SIMULATED_MODEL_ID,
      messages: [{ role: 'user', content: 'explain caching' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const deltas: string[] = [];
    let usage;
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) deltas.push(chunk.choices[0].delta.content);
      if (chunk.usage) usage = chunk.usage;
    }
    expect(deltas).toEqual(words('explain caching'));
    expect(usage).toEqual({ prompt_tokens: 2, completion_tokens: 39, total_tokens: 41 });
  });
});
