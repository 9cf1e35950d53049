import type { ChatMessage } from '../../../../shared/messages.ts';
import type { History } from '../history.ts';

/** History in this process: gone when it exits (`STORE=memory`). */
export class MemoryHistory implements History {
  readonly #sessions = new Map<string, ChatMessage[]>();

  async read(sessionKey: string): Promise<ChatMessage[]> {
    return [...(this.#sessions.get(sessionKey) ?? [])];
  }

  async append(sessionKey: string, message: ChatMessage, keepLast: number): Promise<void> {
    let messages = this.#sessions.get(sessionKey);
    if (!messages) this.#sessions.set(sessionKey, (messages = []));
    messages.push(message);
    if (messages.length > keepLast) messages.splice(0, messages.length - keepLast);
  }

  async close(): Promise<void> {}
}
