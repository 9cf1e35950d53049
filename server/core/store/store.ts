import type { ChatMessage } from '../../../shared/messages.ts';

/**
 * Where sessions live. Keys are opaque strings built by the chat service (they include the owner),
 * so one store serves every tenant. Implementations: memory (default) and Redis.
 */
export interface Store {
  readonly kind: string;
  getMessages(sessionKey: string): Promise<ChatMessage[]>;
  appendMessage(sessionKey: string, message: ChatMessage): Promise<void>;
  /** Takes the session's generation lock; false when another generation holds it. */
  acquireSessionLock(sessionKey: string, generationId: string): Promise<boolean>;
  /** Releases the lock if `generationId` still holds it. */
  releaseSessionLock(sessionKey: string, generationId: string): Promise<void>;
  /** The generation holding the session's lock, if any. */
  sessionLockHolder(sessionKey: string): Promise<string | undefined>;
  close(): Promise<void>;
}
