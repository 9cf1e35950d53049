import type { ChatMessage } from '../../shared/messages.ts';
import type { ProviderMessage } from './providers/provider.ts';

/**
 * A session's history, ending with the turn's message, as a model's prompt. A reply that never
 * finished and was answered again (a client that got no answer sent its turn once more) is left
 * out: one message gets one reply, and roles alternate, as many chat templates require. So is a
 * reply with no text (failed or stopped before its first token, or a model that said nothing):
 * several APIs refuse an empty message (Anthropic's: every message but a final assistant one needs
 * content); the message it did not answer then joins the next one (once, when it was sent again),
 * so that roles still alternate.
 */
export function promptFrom(history: readonly ChatMessage[]): ProviderMessage[] {
  const prompt: ProviderMessage[] = [];
  history.forEach((message, i) => {
    if (message.role === 'assistant' && (message.content === '' || (message.status !== 'complete' && history[i + 1]?.role === 'assistant'))) return;
    const last = prompt.at(-1);
    if (last?.role !== 'user' || message.role !== 'user') prompt.push({ role: message.role, content: message.content });
    // The same message sent again (its reply failed) is said once.
    else if (last.content !== message.content) prompt[prompt.length - 1] = { role: 'user', content: `${last.content}\n\n${message.content}` };
  });
  return prompt;
}
