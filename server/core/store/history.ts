import type { ChatMessage } from '../../../shared/messages.ts';

/**
 * Where conversations last: the History port. One implementation per backend (memory, Redis,
 * SQLite, PostgreSQL), each held to the same contract test. Session keys are opaque strings built
 * by the chat service (they include the owner), so one store serves every tenant.
 *
 * Methods reject with SluiceError('unavailable') when the backing service cannot be reached.
 */
export interface History {
  /** The session's messages, oldest first. */
  read(sessionKey: string): Promise<ChatMessage[]>;
  /** Appends a message, then keeps only the newest `keepLast` (oldest trimmed). */
  append(sessionKey: string, message: ChatMessage, keepLast: number): Promise<void>;
  close(): Promise<void>;
}
