import type { Logger } from 'pino';
import { SluiceError } from '../../../errors.ts';
import type { Op } from './operations.ts';

export interface QueuedWrite {
  readonly make: () => Op<unknown>;
  /** The one session it writes, or undefined for a write of many (a retention sweep). */
  readonly session: string | undefined;
}

/**
 * Runs writes in one transaction, each session's in order (those of different sessions may run
 * side by side); resolves with their results, or rejects (rolled back).
 */
export type BatchRunner = (writes: readonly QueuedWrite[]) => Promise<unknown[]> | unknown[];

export interface WriteQueueOptions {
  readonly run: BatchRunner;
  readonly logger: Logger;
  /**
   * Whether a failed batch's writes are worth trying one by one: yes for errors of one write (a
   * constraint, a deadlock), no for the database being away (each would wait for it again).
   */
  readonly retryAlone: (error: unknown) => boolean;
  /** Operations per transaction: a bound on how long one holds the database (and SQLite the event loop). */
  readonly maxBatch?: number;
  /** Writes waiting at most; beyond it new ones are refused (`unavailable`) instead of piling up while the database is slow. */
  readonly maxPending?: number;
  /**
   * How long a write may wait for those queued before it; past it, it is refused (`unavailable`)
   * without being run. With the database's own limit on a statement, this bounds how long any
   * write takes to be answered, however many are queued.
   */
  readonly maxWaitMs: number;
  /** Milliseconds of a monotonic clock (default: performance.now). */
  readonly now?: () => number;
}

interface Pending {
  make: () => Op<unknown>;
  readonly queuedAt: number;
  readonly session: string | undefined;
  readonly waiters: Array<{ resolve: (value: unknown) => void; reject: (error: unknown) => void }>;
  readonly coalesce: string | undefined;
}

/**
 * The one writer of a SQL store. Writes called in one turn of the event loop go to the database
 * together, as one transaction (one commit, one WAL sync, one round trip's wait); those called
 * while it runs form the next. Writes run in the order they were called. If a batch fails for
 * one write's sake, each of its writes is tried again alone, so that one bad write (or a deadlock
 * between instances) fails only itself.
 */
export class WriteQueue {
  readonly #run: BatchRunner;
  readonly #retryAlone: (error: unknown) => boolean;
  readonly #logger: Logger;
  readonly #maxBatch: number;
  readonly #maxPending: number;
  readonly #maxWaitMs: number;
  readonly #now: () => number;
  #pending: Pending[] = [];
  /** Pending writes that a later one with the same key replaces (a reply's checkpoints). */
  readonly #coalescing = new Map<string, Pending>();
  #flushing: Promise<void> | undefined;
  #failing = false;
  #closed = false;

  constructor(options: WriteQueueOptions) {
    this.#run = options.run;
    this.#retryAlone = options.retryAlone;
    this.#logger = options.logger;
    this.#maxBatch = options.maxBatch ?? 256;
    this.#maxPending = options.maxPending ?? 10_000;
    if (!Number.isInteger(options.maxWaitMs) || options.maxWaitMs < 1) {
      throw new RangeError(`write queue: maxWaitMs must be a positive integer, got ${options.maxWaitMs}`);
    }
    this.#maxWaitMs = options.maxWaitMs;
    this.#now = options.now ?? (() => performance.now());
  }

  /**
   * Queues a write. With `coalesce`, it replaces a queued, not yet started write with the same key
   * (both callers then get its result); `barrier` stops later writes from coalescing into a queued
   * one with that key (so they cannot jump ahead of this write).
   */
  push<T>(session: string | undefined, make: () => Op<T>, keys: { coalesce?: string; barrier?: string } = {}): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const waiter = { resolve: resolve as (value: unknown) => void, reject };
      if (this.#closed) return reject(new SluiceError('unavailable', 'The history store is closed'));
      this.#expire();
      if (keys.barrier !== undefined) this.#coalescing.delete(keys.barrier);
      const queued = keys.coalesce === undefined ? undefined : this.#coalescing.get(keys.coalesce);
      if (queued) {
        queued.make = make;
        queued.waiters.push(waiter);
        return;
      }
      if (this.#pending.length >= this.#maxPending) {
        return reject(new SluiceError('unavailable', 'The history store is overloaded; try again shortly'));
      }
      const pending: Pending = { make, queuedAt: this.#now(), session, waiters: [waiter], coalesce: keys.coalesce };
      this.#pending.push(pending);
      if (keys.coalesce !== undefined) this.#coalescing.set(keys.coalesce, pending);
      this.#flushing ??= this.#flushSoon();
    });
  }

  /** The last write failed (and none has succeeded since). */
  get failing(): boolean {
    return this.#failing;
  }

  /** Stops taking writes and resolves once those already queued are done. */
  async close(): Promise<void> {
    this.#closed = true;
    while (this.#flushing) await this.#flushing;
  }

  async #flushSoon(): Promise<void> {
    // The end of this turn of the event loop: everything called in it goes together.
    await new Promise((resolve) => setImmediate(resolve));
    try {
      while ((this.#expire(), this.#pending.length > 0)) {
        const batch = this.#pending.splice(0, this.#maxBatch);
        this.#uncoalesce(batch);
        await this.#runBatch(batch);
        // Between batches, let the event loop run (SQLite's writes are synchronous).
        if (this.#pending.length > 0) await new Promise((resolve) => setImmediate(resolve));
      }
    } finally {
      this.#flushing = undefined;
    }
  }

  /**
   * Refuses the writes that have waited past maxWaitMs (the oldest first: they are a prefix of the
   * queue). Looked at when a write comes and before each batch: a batch stuck on the database
   * holds the rest only until its statements' own limit.
   */
  #expire(): void {
    const pending = this.#pending;
    const oldest = this.#now() - this.#maxWaitMs;
    let n = 0;
    while (n < pending.length && pending[n]!.queuedAt <= oldest) n++;
    if (n === 0) return;
    const expired = pending.splice(0, n);
    this.#uncoalesce(expired);
    const error = new SluiceError('unavailable', 'The history store is too slow to answer; try again shortly');
    this.#failed(error);
    for (const p of expired) settle(p, false, error);
  }

  /** Writes leaving the queue take no more checkpoints into them. */
  #uncoalesce(writes: readonly Pending[]): void {
    for (const p of writes) if (p.coalesce !== undefined && this.#coalescing.get(p.coalesce) === p) this.#coalescing.delete(p.coalesce);
  }

  async #runBatch(batch: readonly Pending[]): Promise<void> {
    try {
      const results = await this.#run(batch);
      batch.forEach((p, i) => settle(p, true, results[i]));
      this.#succeeded();
      return;
    } catch (error) {
      if (batch.length === 1 || !this.#retryAlone(error)) {
        this.#failed(error);
        for (const p of batch) settle(p, false, unavailable(error));
        return;
      }
    }
    for (const p of batch) {
      try {
        const [result] = await this.#run([p]);
        settle(p, true, result);
        this.#succeeded();
      } catch (error) {
        this.#failed(error);
        settle(p, false, unavailable(error));
      }
    }
  }

  #failed(error: unknown): void {
    if (!this.#failing) this.#logger.warn({ err: error }, 'history store: writes are failing');
    this.#failing = true;
  }

  #succeeded(): void {
    if (this.#failing) this.#logger.info('history store: writes succeed again');
    this.#failing = false;
  }
}

function settle(p: Pending, ok: boolean, value: unknown): void {
  for (const w of p.waiters) {
    if (ok) w.resolve(value);
    else w.reject(value);
  }
}

export function unavailable(error: unknown): SluiceError {
  if (error instanceof SluiceError) return error;
  return new SluiceError('unavailable', 'The history store is unavailable; try again shortly', { cause: error });
}

/** The queue key of a reply's draft: its checkpoints coalesce, its final append is a barrier. */
export const draftKey = (sessionKey: string, replyId: string): string => `${sessionKey}\u0000${replyId}`;
