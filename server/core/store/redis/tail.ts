import type { Redis } from 'ioredis';
import { SluiceError } from '../../errors.ts';

/** One entry of a Redis Stream: its id and its fields. */
export type StreamEntry = [id: string, fields: string[]];

interface Waiter {
  readonly afterSeq: number;
  readonly done: (entries: StreamEntry[] | Error) => void;
}

/** How long one blocking read waits before it is made again (it is interrupted sooner when needed). */
const BLOCK_MS = 1_000;

export const seqOf = (id: string): number => Number(id.slice(id.indexOf('-') + 1));

/** Waits for new entries of event logs, for every listener of this instance. */
export interface Tail {
  /** Entries of `key` after position `afterSeq`, once there are some; empty after `waitMs` or an abort. */
  wait(key: string, afterSeq: number, waitMs: number, signal: AbortSignal | undefined): Promise<StreamEntry[]>;
  /** Ends every wait (with the store's `unavailable`) and stops reading. */
  close(): void;
}

/**
 * Every wait for new events of any log, on this instance, served by one blocking `XREAD` over all
 * the logs waited on, on one connection of its own: listeners cost no connection each, and none is
 * opened or closed as they come and go. A wait for a log the read does not cover yet interrupts it
 * (`CLIENT UNBLOCK`), and the next read covers it.
 */
export class RedisTail implements Tail {
  readonly #reader: Redis;
  readonly #control: Redis;
  readonly #waiters = new Map<string, Set<Waiter>>();
  /** What the blocking read under way covers: each log and the position it reads after. */
  #covered = new Map<string, number>();
  #readerId: string | undefined;
  #running = false;
  #closed = false;

  /** `reader` is this tail's own connection; `control` any other, to interrupt the reader's wait. */
  constructor(reader: Redis, control: Redis) {
    this.#reader = reader;
    this.#control = control;
    reader.on('ready', () => {
      this.#readerId = undefined;
      reader.client('ID').then(
        (id) => (this.#readerId = String(id)),
        () => undefined,
      );
    });
  }

  /** Entries of `key` after position `afterSeq`, once there are some; empty after `waitMs` or an abort. */
  wait(key: string, afterSeq: number, waitMs: number, signal: AbortSignal | undefined): Promise<StreamEntry[]> {
    if (this.#closed) return Promise.reject(new SluiceError('unavailable', 'The session store is closed'));
    return new Promise((resolve, reject) => {
      let waiters = this.#waiters.get(key);
      if (!waiters) this.#waiters.set(key, (waiters = new Set()));
      const finish = (entries: StreamEntry[] | Error): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        const set = this.#waiters.get(key);
        set?.delete(waiter);
        if (set?.size === 0) this.#waiters.delete(key);
        if (entries instanceof Error) reject(entries);
        else resolve(entries);
      };
      const waiter: Waiter = { afterSeq, done: finish };
      const onAbort = (): void => finish([]);
      const timer = setTimeout(onAbort, waitMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      waiters.add(waiter);
      const covered = this.#covered.get(key);
      if (!this.#running) void this.#run();
      else if (covered === undefined || covered > afterSeq) this.#interrupt();
    });
  }

  /** Ends every wait (with the store's `unavailable`) and stops reading. */
  close(): void {
    this.#closed = true;
    this.#failAll(new SluiceError('unavailable', 'The session store is closed'));
  }

  async #run(): Promise<void> {
    this.#running = true;
    try {
      while (this.#waiters.size > 0 && !this.#closed) {
        const covered = new Map<string, number>();
        for (const [key, waiters] of this.#waiters) {
          let min = Number.POSITIVE_INFINITY;
          for (const w of waiters) min = Math.min(min, w.afterSeq);
          covered.set(key, min);
        }
        this.#covered = covered;
        const keys = [...covered.keys()];
        let reply: Array<[string, StreamEntry[]]> | null;
        try {
          reply = await this.#reader.xread('BLOCK', BLOCK_MS, 'STREAMS', ...keys, ...keys.map((k) => `0-${covered.get(k)!}`));
        } catch (error) {
          // Every current wait fails (its listener ends with an explicit error); later ones try again.
          this.#failAll(new SluiceError('unavailable', 'The session store is unavailable; try again shortly', { cause: error }));
          continue;
        }
        for (const [key, entries] of reply ?? []) {
          for (const waiter of [...(this.#waiters.get(key) ?? [])]) {
            const after = entries.filter(([id]) => seqOf(id) > waiter.afterSeq);
            if (after.length > 0) waiter.done(after);
          }
        }
      }
    } finally {
      this.#covered = new Map();
      this.#running = false;
    }
  }

  #interrupt(): void {
    if (this.#readerId === undefined) return;
    this.#control.client('UNBLOCK', this.#readerId).catch(() => undefined);
  }

  #failAll(error: Error): void {
    for (const waiters of [...this.#waiters.values()]) for (const waiter of [...waiters]) waiter.done(error);
  }
}
