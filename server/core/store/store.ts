import type { ChatMessage } from '../../../shared/messages.ts';
import type { StreamEvent } from '../../../shared/stream-events.ts';

/** What the store keeps about a generation so that any instance can attach to it. */
export interface GenerationRecord {
  readonly id: string;
  readonly owner: string;
  readonly sessionId: string;
  readonly sessionKey: string;
  /** False for stateless replies (no session history to repair). */
  readonly stored: boolean;
}

export interface LoggedEvent {
  readonly seq: number;
  readonly event: StreamEvent;
}

/**
 * Where sessions, event logs and the signals between instances live. Keys are opaque strings built
 * by the chat service (they include the owner), so one store serves every tenant. The memory store
 * is the zero-dependency default; the Redis store lets several instances share everything.
 * Methods reject with SluiceError('unavailable') when the backing service cannot be reached.
 */
export interface Store {
  readonly kind: 'memory' | 'redis';
  /** True when other processes read this store (they then need a copy of every event). */
  readonly shared: boolean;

  // History
  getMessages(sessionKey: string): Promise<ChatMessage[]>;
  /** Appends a message, then keeps only the newest `keepLast` (oldest trimmed). */
  appendMessage(sessionKey: string, message: ChatMessage, keepLast: number): Promise<void>;

  // One generation per session
  /** Takes the session's lock for `generationId`; false when another generation holds it. */
  acquireSessionLock(sessionKey: string, generationId: string, ttlMs: number): Promise<boolean>;
  /** Keeps a held lock alive; false when it was lost. */
  refreshSessionLock(sessionKey: string, generationId: string, ttlMs: number): Promise<boolean>;
  /** Releases the lock if `generationId` still holds it. */
  releaseSessionLock(sessionKey: string, generationId: string): Promise<void>;
  /** The generation holding the session's lock, if any. */
  sessionLockHolder(sessionKey: string): Promise<string | undefined>;

  // Event logs, numbered from 1
  saveGeneration(record: GenerationRecord, ttlMs: number): Promise<void>;
  loadGeneration(generationId: string): Promise<GenerationRecord | undefined>;
  /** Appends event `seq`; false if an event with that number is already there. */
  appendEvent(generationId: string, seq: number, event: StreamEvent): Promise<boolean>;
  /**
   * Events after `afterSeq`, in order. When there are none yet, waits up to `waitMs` for some
   * (returning an empty list on timeout or abort).
   */
  readEvents(generationId: string, afterSeq: number, waitMs: number, signal?: AbortSignal): Promise<LoggedEvent[]>;
  /** Keeps a finished generation's log (and record) for `ttlMs` more, then forgets it. */
  expireGeneration(generationId: string, ttlMs: number): Promise<void>;

  // Liveness: the instance running a generation keeps it marked alive until its terminal event is logged
  markAlive(generationId: string, ttlMs: number): Promise<void>;
  clearAlive(generationId: string): Promise<void>;
  isAlive(generationId: string): Promise<boolean>;

  // Listeners on other instances, so that the resume window does not close while one follows
  touchListener(generationId: string, listenerId: string, ttlMs: number): Promise<void>;
  dropListener(generationId: string, listenerId: string): Promise<void>;
  countListeners(generationId: string): Promise<number>;

  // Limits that hold across instances
  /** Counts a hit in the fixed window `key` of `windowMs`; returns the count so far and when the window ends. */
  hitWindow(key: string, windowMs: number): Promise<{ count: number; resetInMs: number }>;
  /** Takes one of `limit` slots of `key` for `member` (slots expire after `ttlMs` unless refreshed). */
  acquireSlot(key: string, member: string, limit: number, ttlMs: number): Promise<boolean>;
  refreshSlot(key: string, member: string, ttlMs: number): Promise<void>;
  releaseSlot(key: string, member: string): Promise<void>;

  // Signals between instances
  publishCancel(generationId: string): Promise<void>;
  /** Calls `handler` for every cancel published by any instance; returns the unsubscribe function. */
  onCancel(handler: (generationId: string) => void): () => void;

  /** True when the backing service answers (readiness). */
  healthy(): Promise<boolean>;

  close(): Promise<void>;
}
