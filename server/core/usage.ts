import type { TokenUsage } from '../../shared/messages.ts';
import { loadBpeTokenizer } from './providers/bpe.ts';
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
  let promptTokens = REPLY_PRIMING;
  for (const message of messages) promptTokens += TOKENS_PER_MESSAGE + promptCounts.count(message.content, (text) => tokenizer.count(text));
  // The reply is in the prompt of the session's next turn: counted into the cache too.
  return { promptTokens, completionTokens: reply.length === 0 ? 0 : promptCounts.count(reply, (text) => tokenizer.count(text)), estimated: true };
}
