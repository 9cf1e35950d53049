import type { ChatMessage } from '../../shared/messages.ts';
import type { ProviderMessage } from './providers/provider.ts';

/**
 * A session's history as a model's prompt. A reply that never finished and was answered again
 * (a client that got no answer sent its turn once more) is left out: one message gets one reply,
 * and roles alternate, as many chat templates require.
 */
export function promptFrom(history: readonly ChatMessage[]): ProviderMessage[] {
  return history.filter((message, i) => !(message.role === 'assistant' && message.status !== 'complete' && history[i + 1]?.role === 'assistant'));
}
