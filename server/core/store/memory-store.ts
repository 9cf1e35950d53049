import type { ChatMessage } from '../../../shared/messages.ts';
import type { StreamEvent } from '../../../shared/stream-events.ts';
import type { GenerationRecord, LoggedEvent, Store } from './store.ts';

interface Log {
  record: GenerationRecord | undefined;
  readonly events: StreamEvent[];
  readonly waiters: Set<() => void>;
  expiresAt: number;
}

/** Expiry is checked lazily on access, so the store holds no timers. */
const expired = (expiresAt: number, now = Date.now()): boolean => expiresAt <= now;

/** The zero-dependency store: everything in this process, gone when it exits. */
export class MemoryStore implements Store {
  readonly shared = false;
  readonly kind = 'memory';
  readonly #sessions = new Map<string, ChatMessage[]>();
  readonly #locks = new Map<string, { generationId: string; expiresAt: number }>();
  readonly #logs = new Map<string, Log>();
  readonly #alive = new Map<string, number>();
  readonly #listeners = new Map<string, Map<string, number>>();
  readonly #cancelHandlers = new Set<(generationId: string) => void>();
  readonly #windows = new Map<string, { count: number; endsAt: number }>();
  readonly #slots = new Map<string, Map<string, number>>();
  #closed = false;
  #nextSweep = 0;

  async getMessages(sessionKey: string): Promise<ChatMessage[]> {
    return [...(this.#sessions.get(sessionKey) ?? [])];
  }

  async appendMessage(sessionKey: string, message: ChatMessage, keepLast: number): Promise<void> {
    let messages = this.#sessions.get(sessionKey);
    if (!messages) this.#sessions.set(sessionKey, (messages = []));
    messages.push(message);
    if (messages.length > keepLast) messages.splice(0, messages.length - keepLast);
  }

  async acquireSessionLock(sessionKey: string, generationId: string, ttlMs: number): Promise<boolean> {
    const lock = this.#locks.get(sessionKey);
    if (lock && !expired(lock.expiresAt)) return false;
    this.#locks.set(sessionKey, { generationId, expiresAt: Date.now() + ttlMs });
    return true;
  }

  async refreshSessionLock(sessionKey: string, generationId: string, ttlMs: number): Promise<boolean> {
    const lock = this.#locks.get(sessionKey);
    if (!lock || lock.generationId !== generationId || expired(lock.expiresAt)) return false;
    lock.expiresAt = Date.now() + ttlMs;
    return true;
  }

  async releaseSessionLock(sessionKey: string, generationId: string): Promise<void> {
    if (this.#locks.get(sessionKey)?.generationId === generationId) this.#locks.delete(sessionKey);
  }

  async sessionLockHolder(sessionKey: string): Promise<string | undefined> {
    const lock = this.#locks.get(sessionKey);
    return lock && !expired(lock.expiresAt) ? lock.generationId : undefined;
  }

  #log(generationId: string, create: boolean): Log | undefined {
    let log = this.#logs.get(generationId);
    if (log && expired(log.expiresAt)) {
      this.#logs.delete(generationId);
      log = undefined;
    }
    if (!log && create) {
      this.#sweep();
      log = { record: undefined, events: [], waiters: new Set(), expiresAt: Number.POSITIVE_INFINITY };
      this.#logs.set(generationId, log);
    }
    return log;
  }

  // Drops expired logs; called when logs are created (at most once a second, so starting a reply
  // stays O(1)), so the map cannot grow without bound.
  #sweep(): void {
    const now = Date.now();
    if (now < this.#nextSweep) return;
    this.#nextSweep = now + 1000;
    for (const [id, log] of this.#logs) if (expired(log.expiresAt, now)) this.#logs.delete(id);
  }

  async saveGeneration(record: GenerationRecord, ttlMs: number): Promise<void> {
    const log = this.#log(record.id, true)!;
    log.record = record;
    log.expiresAt = Date.now() + ttlMs;
  }

  async loadGeneration(generationId: string): Promise<GenerationRecord | undefined> {
    return this.#log(generationId, false)?.record;
  }

  async appendEvent(generationId: string, seq: number, event: StreamEvent): Promise<boolean> {
    const log = this.#log(generationId, true)!;
    if (seq !== log.events.length + 1) return false;
    log.events.push(event);
    for (const wake of log.waiters) wake();
    return true;
  }

  async readEvents(generationId: string, afterSeq: number, waitMs: number, signal?: AbortSignal): Promise<LoggedEvent[]> {
    const read = (): LoggedEvent[] => {
      const events = this.#log(generationId, false)?.events ?? [];
      return events.slice(afterSeq).map((event, i) => ({ seq: afterSeq + i + 1, event }));
    };
    const now = read();
    if (now.length > 0 || waitMs <= 0 || signal?.aborted || this.#closed) return now;
    const log = this.#log(generationId, true)!;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        log.waiters.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, waitMs);
      log.waiters.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
    return read();
  }

  async expireGeneration(generationId: string, ttlMs: number): Promise<void> {
    const log = this.#log(generationId, false);
    if (log) log.expiresAt = Date.now() + ttlMs;
    this.#alive.delete(generationId);
    this.#listeners.delete(generationId);
  }

  async markAlive(generationId: string, ttlMs: number): Promise<void> {
    this.#alive.set(generationId, Date.now() + ttlMs);
  }

  async clearAlive(generationId: string): Promise<void> {
    this.#alive.delete(generationId);
  }

  async isAlive(generationId: string): Promise<boolean> {
    const until = this.#alive.get(generationId);
    return until !== undefined && !expired(until);
  }

  async touchListener(generationId: string, listenerId: string, ttlMs: number): Promise<void> {
    let listeners = this.#listeners.get(generationId);
    if (!listeners) this.#listeners.set(generationId, (listeners = new Map()));
    listeners.set(listenerId, Date.now() + ttlMs);
  }

  async dropListener(generationId: string, listenerId: string): Promise<void> {
    const listeners = this.#listeners.get(generationId);
    listeners?.delete(listenerId);
    if (listeners?.size === 0) this.#listeners.delete(generationId);
  }

  async countListeners(generationId: string): Promise<number> {
    const listeners = this.#listeners.get(generationId);
    if (!listeners) return 0;
    const now = Date.now();
    for (const [id, until] of listeners) if (expired(until, now)) listeners.delete(id);
    return listeners.size;
  }

  async hitWindow(key: string, windowMs: number): Promise<{ count: number; resetInMs: number }> {
    const now = Date.now();
    let window = this.#windows.get(key);
    if (!window || expired(window.endsAt, now)) {
      if (this.#windows.size > 10_000) for (const [k, w] of this.#windows) if (expired(w.endsAt, now)) this.#windows.delete(k);
      window = { count: 0, endsAt: now + windowMs };
      this.#windows.set(key, window);
    }
    window.count++;
    return { count: window.count, resetInMs: window.endsAt - now };
  }

  async acquireSlot(key: string, member: string, limit: number, ttlMs: number): Promise<boolean> {
    let slots = this.#slots.get(key);
    if (!slots) this.#slots.set(key, (slots = new Map()));
    const now = Date.now();
    for (const [m, until] of slots) if (expired(until, now)) slots.delete(m);
    if (!slots.has(member) && slots.size >= limit) return false;
    slots.set(member, now + ttlMs);
    return true;
  }

  async refreshSlot(key: string, member: string, ttlMs: number): Promise<void> {
    const slots = this.#slots.get(key);
    if (slots?.has(member)) slots.set(member, Date.now() + ttlMs);
  }

  async releaseSlot(key: string, member: string): Promise<void> {
    const slots = this.#slots.get(key);
    slots?.delete(member);
    if (slots?.size === 0) this.#slots.delete(key);
  }

  async publishCancel(generationId: string): Promise<void> {
    for (const handler of this.#cancelHandlers) handler(generationId);
  }

  onCancel(handler: (generationId: string) => void): () => void {
    this.#cancelHandlers.add(handler);
    return () => this.#cancelHandlers.delete(handler);
  }

  async healthy(): Promise<boolean> {
    return !this.#closed;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#locks.clear();
    this.#cancelHandlers.clear();
    for (const log of this.#logs.values()) for (const wake of log.waiters) wake();
  }
}
