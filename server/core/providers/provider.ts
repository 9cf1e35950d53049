import type { TokenUsage } from '../../../shared/messages.ts';
import type { FinishReason } from '../../../shared/stream-events.ts';

/** What a provider sees of a conversation; stored history messages fit this shape as they are. */
export interface ProviderMessage {
  readonly role: 'system' | 'user' | 'assistant';
  readonly content: string;
}

export interface ProviderRequest {
  /** The whole conversation so far, oldest first, ending with the new user message. */
  readonly messages: readonly ProviderMessage[];
  /**
   * Aborted when nobody wants the reply any more; providers must stop promptly and leave nothing
   * running. A generation makes it when a provider first reads it: a provider that never waits can
   * leave it alone, and stops when its consumer stops pulling.
   */
  readonly signal: AbortSignal;
  /**
   * The most tokens the caller wants in the reply (the OpenAI route's `max_tokens`): a provider
   * stops there, reporting `length`; its own limit, when lower, stands.
   */
  readonly maxTokens?: number;
  /** Providers that know token counts report them here before they finish. */
  readonly reportUsage?: (usage: TokenUsage) => void;
  /** Providers that know why a reply ended report it here when it was not a natural stop. */
  readonly reportFinish?: (reason: FinishReason) => void;
}

/**
 * What a provider yields: one delta, or the deltas it has at once in order (each is still its own
 * event). An array costs its consumer one turn of the async iteration, where one yield per delta
 * costs a turn each: a fast provider or a busy upstream often has many ready together.
 */
export type ProviderYield = string | readonly string[];

/** The deltas of what a provider yielded, in order (for consumers that take them one by one). */
export function asDeltas(item: ProviderYield): readonly string[] {
  return typeof item === 'string' ? [item] : item;
}

/** An LLM behind one small interface: messages in, text deltas out. */
export interface Provider {
  readonly name: string;
  /**
   * Messages the provider sends before every conversation (an operator's system prompt): part of
   * what the model reads, so part of an estimated prompt too.
   */
  readonly preamble?: readonly ProviderMessage[];
  stream(request: ProviderRequest): AsyncIterable<ProviderYield>;
  /**
   * Lets go of what the provider holds (an upstream's kept-alive connections), once no reply is
   * running: replies still streaming are left to finish.
   */
  close?(): Promise<void>;
}
