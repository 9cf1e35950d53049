import type { ChatMessage } from '../../../shared/messages.ts';
import type { Store } from './store.ts';

/** The zero-dependency store: everything in this process, gone when it exits. */
export class MemoryStore implements Store {
  readonly kind = 'memory';
  readonly #sessions = new Map<string, ChatMessage[]>();
  readonly #locks = new Map<string, string>();

  async getMessages(sessionKey: string): Promise<ChatMessage[]> {
    return [...(this.#sessions.get(sessionKey) ?? [])];
  }

  async appendMessage(sessionKey: string, message: ChatMessage): Promise<void> {
    let messages = this.#sessions.get(sessionKey);
    if (!messages) this.#sessions.set(sessionKey, (messages = []));
    messages.push(message);
  }

  async acquireSessionLock(sessionKey: string, generationId: string): Promise<boolean> {
    if (this.#locks.has(sessionKey)) return false;
    this.#locks.set(sessionKey, generationId);
    return true;
  }

  async releaseSessionLock(sessionKey: string, generationId: string): Promise<void> {
    if (this.#locks.get(sessionKey) === generationId) this.#locks.delete(sessionKey);
  }

  async sessionLockHolder(sessionKey: string): Promise<string | undefined> {
    return this.#locks.get(sessionKey);
  }

  async close(): Promise<void> {
    this.#locks.clear();
  }
}
