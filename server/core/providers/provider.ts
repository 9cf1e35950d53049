import type { ChatMessage, TokenUsage } from '../../../shared/messages.ts';

export interface ProviderRequest {
  /** The whole session so far, oldest first, ending with the new user message. */
  readonly messages: readonly ChatMessage[];
  /** Aborted when nobody wants the reply any more; providers must stop promptly and leave nothing running. */
  readonly signal: AbortSignal;
  /** Providers that know token counts report them here before they finish. */
  readonly reportUsage?: (usage: TokenUsage) => void;
}

/** An LLM behind one small interface: messages in, text deltas out. */
export interface Provider {
  readonly name: string;
  stream(request: ProviderRequest): AsyncIterable<string>;
}
