import type { StreamEvent } from '../../../../shared/stream-events.ts';
import type { AppendResult, EventLog, EventWriter, GenerationRecord, LoggedEvent } from '../event-log.ts';

interface Log {
  record: GenerationRecord | undefined;
  readonly events: StreamEvent[];
  readonly waiters: Set<() => void>;
  expiresAt: number;
}

/** Expiry is checked lazily on access, so the log holds no timers. */
const expired = (expiresAt: number, now = Date.now()): boolean => expiresAt <= now;

export interface MemoryEventLogOptions {
  /**
   * True when several chat services in this process share the log (tests of scale-out without
   * Redis): generations then copy their events into it. A log of one chat service keeps nothing:
   * its generations serve every listener themselves.
   */
  readonly shared?: boolean;
}

/** Event logs in this process. */
export class MemoryEventLog implements EventLog {
  readonly #shared: boolean;
  readonly #logs = new Map<string, Log>();
  readonly #listeners = new Map<string, Map<string, number>>();
  #nextSweep = 0;

  constructor(options: MemoryEventLogOptions = {}) {
    this.#shared = options.shared ?? false;
  }

  async open(record: GenerationRecord, ttlMs: number): Promise<EventWriter | undefined> {
    if (!this.#shared) return undefined;
    const log = this.#log(record.id, true)!;
    log.record = record;
    log.expiresAt = Date.now() + ttlMs;
    return (seq, event, deadline) => this.append(record.id, seq, event, deadline);
  }

  async load(generationId: string): Promise<GenerationRecord | undefined> {
    return this.#log(generationId, false)?.record;
  }

  async append(generationId: string, seq: number, event: StreamEvent, deadline?: number): Promise<AppendResult> {
    const log = this.#log(generationId, true)!;
    const last = log.events.length;
    if (last > 0 && log.events[last - 1]!.type !== 'delta' && seq >= last) return 'ended';
    if (seq <= last) return 'duplicate';
    if (seq !== last + 1) return 'gap';
    if (deadline && Date.now() > deadline) return 'expired';
    log.events.push(event);
    for (const wake of log.waiters) wake();
    return 'added';
  }

  async holds(generationId: string, seq: number): Promise<boolean> {
    return (this.#log(generationId, false)?.events.length ?? 0) >= seq;
  }

  async read(generationId: string, afterSeq: number, waitMs: number, signal?: AbortSignal): Promise<LoggedEvent[]> {
    const read = (): LoggedEvent[] => {
      const events = this.#log(generationId, false)?.events ?? [];
      return events.slice(afterSeq).map((event, i) => ({ seq: afterSeq + i + 1, event }));
    };
    const now = read();
    if (now.length > 0 || waitMs <= 0 || signal?.aborted) return now;
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

  async expire(generationId: string, ttlMs: number): Promise<void> {
    const log = this.#log(generationId, false);
    if (log) log.expiresAt = Date.now() + ttlMs;
    this.#listeners.delete(generationId);
  }

  async touchListener(generationId: string, listenerId: string, ttlMs: number): Promise<void> {
    let listeners = this.#listeners.get(generationId);
    if (!listeners) this.#listeners.set(generationId, (listeners = new Map<string, number>()));
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

  /** Wakes every waiting reader (they read what there is and return). */
  close(): void {
    for (const log of this.#logs.values()) for (const wake of log.waiters) wake();
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
}
