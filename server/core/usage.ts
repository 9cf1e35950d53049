import type { TokenUsage } from '../../shared/messages.ts';
import { loadBpeTokenizer, type BpeTokenizer } from './providers/bpe.ts';
import type { ProviderMessage } from './providers/provider.ts';
import { TokenCountCache } from './token-count-cache.ts';

// Token usage when the provider reports none (the simulator by default, an upstream without
// `include_usage`, every reply cut short before the upstream's last chunk): Sluice counts it itself
// with OpenAI's o200k_base encoding (gpt-tokenizer), so that billing sees what every reply consumed.

// OpenAI's chat format wraps every message in a few tokens and primes the reply with a few more
// (the count OpenAI's cookbook gives for its current models): without them an estimate of a
// conversation of short messages would be far below the bill.
const TOKENS_PER_MESSAGE = 3;
const REPLY_PRIMING = 3;

// The messages of a session come back as the prompt of each of its turns: each is counted once
// while it stays among the 4 M characters (about 8 MB) most recently counted.
const promptCounts = new TokenCountCache({ minChars: 256, maxChars: 4_000_000 });
/** Characters of a prompt one estimate counts that were not counted before (about 30 ms). */
const PROMPT_BUDGET_CHARS = 500_000;

/**
 * Loads the tokenizer's tables (about 0.3 s of blocked event loop and 60 MB, once a process), so
 * that the first reply to need an estimate does not stall every stream while they load.
 */
export function preloadTokenizer(): Promise<unknown> {
  return loadBpeTokenizer();
}

/**
 * What a reply consumed, counted by Sluice and marked `estimated`: the conversation the provider
 * was sent (the prompt) and the text it produced, however the reply ended. Runs once a reply, never
 * per token: 32-40 µs for a short prompt and a 39-word reply (more in a busy server, where the
 * tokenizer's garbage adds to every collection), and 0.03-0.1 µs a character of context not
 * counted before (a session's earlier messages are remembered). Undefined when the tokenizer cannot
 * be loaded.
 */
export async function estimateUsage(messages: readonly ProviderMessage[], reply: string): Promise<TokenUsage | undefined> {
  let tokenizer;
  try {
    tokenizer = await loadBpeTokenizer();
  } catch {
    return undefined;
  }
  const count = (text: string): number => countInPieces(tokenizer, text);
  // Newest first, and of the earlier messages at most PROMPT_BUDGET_CHARS not counted before: a session larger than the
  // cache would otherwise be counted whole every turn (60 ns a character: 0.3 s at 5 M, every
  // stream of the process held meanwhile). Beyond the budget, older messages are estimated at the
  // rate of those counted.
  let promptTokens = REPLY_PRIMING;
  let fresh = 0;
  let countedChars = 0;
  let countedTokens = 0;
  let skippedChars = 0;
  for (let i = messages.length - 1; i >= 0; i--) {
    const text = messages[i]!.content;
    promptTokens += TOKENS_PER_MESSAGE;
    // The newest message is counted whole, whatever its length: the budget is for the history before it.
    if (i < messages.length - 1 && !promptCounts.has(text)) {
      if (fresh + text.length > PROMPT_BUDGET_CHARS) {
        skippedChars += text.length;
        continue;
      }
      fresh += text.length;
    }
    const tokens = promptCounts.count(text, count);
    countedChars += text.length;
    countedTokens += tokens;
    promptTokens += tokens;
  }
  if (skippedChars > 0) promptTokens += Math.ceil(skippedChars * (countedChars > 0 ? countedTokens / countedChars : 0.25));
  // The reply is in the prompt of the session's next turn: counted into the cache too.
  return { promptTokens, completionTokens: reply.length === 0 ? 0 : promptCounts.count(reply, count), estimated: true };
}

// BPE merges a pre-token (a run of letters, of punctuation, of spaces) in time that grows with its
// length squared: a message of 32,000 letters held the event loop, every stream with it, for 1.4 s.
// Longer runs are counted in pieces of this length, which costs the estimate at most a token a piece.
const LONG_RUN = /(\S{256}|\s{256})/;

function countInPieces(tokenizer: BpeTokenizer, text: string): number {
  if (!LONG_RUN.test(text)) return tokenizer.count(text);
  let tokens = 0;
  for (const piece of text.split(LONG_RUN)) if (piece.length > 0) tokens += tokenizer.count(piece);
  return tokens;
}
