import { describe, expect, it } from 'vitest';
import { asDeltas } from '../server/core/providers/provider.ts';
import { createSimulatedProvider, simulatedDeltas } from '../server/core/providers/simulated.ts';
import type { TokenUsage } from '../shared/index.ts';
import { startServer } from './helpers/server.ts';
import { streamSseRoute } from './helpers/sse.ts';
import { collectStream, stockClient } from './helpers/trpc-clients.ts';

const user = (content: string) => ({ role: 'user' as const, content });

async function run(options: Parameters<typeof createSimulatedProvider>[0], prompt: string) {
  const provider = createSimulatedProvider(options);
  const deltas: string[] = [];
  let usage: TokenUsage | undefined;
  for await (const d of provider.stream({ messages: [user(prompt)], signal: new AbortController().signal, reportUsage: (u) => (usage = u) })) {
    deltas.push(...asDeltas(d));
  }
  return { deltas, usage };
}

describe('simulator realism', () => {
  it('BPE mode splits the same reply into real o200k_base tokens, and counts them', async () => {
    const prompt = 'explain caching 🚀 naïvely';
    const words = await run({ delayMs: 0 }, prompt);
    const bpe = await run({ delayMs: 0, tokenizer: 'bpe', usage: true }, prompt);
    expect(bpe.deltas.join('')).toBe(words.deltas.join(''));
    // Real tokens: more pieces than words, several are sub-word ("ex" + "plain"), leading spaces.
    expect(bpe.deltas.length).toBeGreaterThan(words.deltas.length);
    expect(bpe.deltas.slice(0, 3)).toEqual(['Based', ' on', ' your']);
    expect(bpe.deltas.every((d) => !d.includes('\uFFFD'))).toBe(true);
    expect(bpe.usage).toEqual({ promptTokens: expect.any(Number), completionTokens: expect.any(Number) });
    expect(bpe.usage!.completionTokens).toBeGreaterThanOrEqual(bpe.deltas.length);
    expect(bpe.usage!.promptTokens).toBeGreaterThan(3);
  });

  it('word mode stays the default and reports nothing unless asked; with usage it counts words', async () => {
    const plain = await run({ delayMs: 0 }, 'explain caching');
    expect(plain.deltas).toEqual(simulatedDeltas('explain caching'));
    expect(plain.usage).toBeUndefined();
    const counted = await run({ delayMs: 0, usage: true }, 'explain caching');
    expect(counted.usage).toEqual({ promptTokens: 2, completionTokens: 39 });
    expect(() => createSimulatedProvider({ delayMs: 0, tokenizer: 'chars' as never })).toThrow(/tokenizer must be 'words' or 'bpe', got "chars"/);
  });

  it('SIM_TOKENIZER=bpe and SIM_USAGE=true reach the transports: usage in the done event and history', async () => {
    const { url } = await startServer({ SIM_TOKENIZER: 'bpe', SIM_USAGE: true });
    const { client } = stockClient(url, 'ws');
    const { events } = await collectStream(client, { message: 'explain caching', sessionId: 'bpe' });
    const deltas = events.filter((e) => e.type === 'delta');
    expect(deltas.length).toBeGreaterThan(39);
    const done = events.at(-1)!;
    expect(done).toMatchObject({ type: 'done', totalChunks: deltas.length, usage: { completionTokens: deltas.length } });
    const history = await (await fetch(`${url}/v1/sessions/bpe/messages`)).json();
    expect(history.messages[1].usage).toEqual(done.type === 'done' ? done.usage : undefined);
  });

  it('the default server still streams the documented words on the SSE route', async () => {
    const { url } = await startServer();
    const deltas: string[] = [];
    for await (const frame of streamSseRoute(url, { message: 'explain caching' })) {
      const data = JSON.parse(frame.data);
      if (!data.done) deltas.push(data.delta);
    }
    expect(deltas).toEqual(simulatedDeltas('explain caching'));
  });
});
