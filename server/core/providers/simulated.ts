import { setImmediate as nextTurn } from 'node:timers/promises';
import { loadBpeTokenizer, type BpeTokenizer } from './bpe.ts';
import { Pacer } from './pacer.ts';
import type { Provider, ProviderMessage, ProviderRequest, ProviderYield } from './provider.ts';

/** The model id the simulator answers as, on the OpenAI-compatible routes. */
export const SIMULATED_MODEL_ID = 'sluice-simulated';

/** The reply template of the original design note (docs/sse-format.md). */
export function simulatedReply(prompt: string): string {
  return (
    `Based on your query about '${prompt}', here is the analysis: ` +
    'This topic involves multiple key components that interact in complex ways. ' +
    'The primary considerations include resource allocation, performance metrics, ' +
    'and systematic evaluation of the underlying mechanisms at play.'
  );
}

// Python's str.split() whitespace, so replies split exactly as the reference implementation's do
// (its separators include the control characters \x1c-\x1f).
// eslint-disable-next-line no-control-regex
const PY_WHITESPACE = /[\t\n\v\f\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/;

/** The deltas the simulator yields for a prompt: each word plus a trailing space. */
export function simulatedDeltas(prompt: string): string[] {
  return simulatedReply(prompt)
    .split(PY_WHITESPACE)
    .filter((w) => w.length > 0)
    .map((w) => `${w} `);
}

function lastUserMessage(messages: readonly ProviderMessage[]): string {
  for (let i = messages.length - 1; i >= 0; i--) {
    if (messages[i]!.role === 'user') return messages[i]!.content;
  }
  return '';
}

// Without a delay the loop would never leave the microtask queue; yielding a turn now and then
// keeps one fast generation from starving every socket on the process.
const TURN_EVERY = 16;

export type SimulatedTokenizer = 'words' | 'bpe';

export interface SimulatedProviderOptions {
  /** Delay before each token, in milliseconds (0: as fast as the event loop allows). */
  readonly delayMs: number;
  /** Delay before the first token (a real model takes longer to start than to go on). Default: `delayMs`. */
  readonly firstDelayMs?: number;
  /**
   * `words` (default): the documented template, one word and a space per delta. `bpe`: the same
   * text split into real o200k_base tokens.
   */
  readonly tokenizer?: SimulatedTokenizer;
  /** Report token usage when the reply is complete (default false). */
  readonly usage?: boolean;
}

const countWords = (text: string): number => text.split(PY_WHITESPACE).filter((w) => w.length > 0).length;

export function createSimulatedProvider(options: SimulatedProviderOptions): Provider {
  if (!Number.isInteger(options.delayMs) || options.delayMs < 0) {
    throw new RangeError(`simulated provider: delayMs must be a non-negative integer, got ${options.delayMs}`);
  }
  const tokenizer = options.tokenizer ?? 'words';
  if (tokenizer !== 'words' && tokenizer !== 'bpe') {
    throw new RangeError(`simulated provider: tokenizer must be 'words' or 'bpe', got ${JSON.stringify(tokenizer)}`);
  }
  const { delayMs } = options;
  const firstDelayMs = options.firstDelayMs ?? delayMs;
  if (!Number.isInteger(firstDelayMs) || firstDelayMs < 0) {
    throw new RangeError(`simulated provider: firstDelayMs must be a non-negative integer, got ${firstDelayMs}`);
  }
  const usage = options.usage ?? false;
  // Start loading the tables now, so that the first reply does not wait for them.
  const bpe = tokenizer === 'bpe' ? loadBpeTokenizer() : undefined;
  bpe?.catch(() => undefined);

  return {
    name: 'simulated',
    async *stream(request: ProviderRequest): AsyncGenerator<ProviderYield> {
      const { messages, reportUsage } = request;
      const words = simulatedDeltas(lastUserMessage(messages));
      let bpeTokenizer: BpeTokenizer | undefined;
      let deltas = words;
      if (bpe) {
        bpeTokenizer = await bpe;
        deltas = bpeTokenizer.split(words.join(''));
      }
      // A caller that wants fewer tokens gets the reply's beginning, cut as a token limit cuts it.
      const cut = request.maxTokens !== undefined && request.maxTokens < deltas.length;
      if (cut) deltas = deltas.slice(0, request.maxTokens);
      // The pacer clears its timer when the signal aborts, and lets go of the signal when the reply
      // ends (or the consumer stops iterating), so nothing is left behind. Without a delay nothing
      // waits longer than a turn of the event loop: the reply stops when its consumer stops pulling,
      // and the signal is not touched (a generation makes it only when a provider asks).
      const pacer = delayMs > 0 || firstDelayMs > 0 ? new Pacer(request.signal) : undefined;
      try {
        for (let i = 0; i < deltas.length;) {
          const wait = i === 0 ? firstDelayMs : delayMs;
          // Paced: one at a time (the first may come at once, the others wait their delay).
          if (pacer && (wait > 0 || delayMs > 0)) {
            if (wait > 0) await pacer.wait(wait);
            yield deltas[i++]!;
            continue;
          }
          // Unpaced, the deltas come as fast as they are taken: a turn's worth at once.
          if (i > 0) await nextTurn();
          const end = Math.min(deltas.length, i + TURN_EVERY);
          yield deltas.slice(i, end);
          i = end;
        }
      } finally {
        pacer?.close();
      }
      if (usage && reportUsage) {
        // Words mode counts words (one per delta); BPE mode counts real tokens.
        const count = bpeTokenizer ? (text: string) => bpeTokenizer.count(text) : countWords;
        reportUsage({
          promptTokens: messages.reduce((n, m) => n + count(m.content), 0),
          completionTokens: bpeTokenizer && !cut ? bpeTokenizer.count(words.join('')) : deltas.length,
        });
      }
      if (cut) request.reportFinish?.('length');
    },
  };
}
