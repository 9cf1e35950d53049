import type { Cluster } from 'ioredis';
import { SluiceError } from '../../errors.ts';
import { seqOf, type StreamEntry, type Tail } from './tail.ts';

interface Waiter {
  readonly afterSeq: number;
  readonly done: (entries: StreamEntry[] | Error) => void;
}

interface FollowedLog {
  readonly waiters: Set<Waiter>;
  /** Settles once the log's channel is subscribed (rejects when it could not be). */
  subscribed: Promise<void> | undefined;
  ready: boolean;
  /** The last position announced on the channel since the subscription. */
  latest: number;
  fetching: boolean;
  fetchAgain: boolean;
  /** When its last wait ended (a log nobody waits on is unsubscribed a while later). */
  idleSince: number;
}

/** How long a log's channel stays subscribed after its last wait, and how often that is checked. */
const LINGER_MS = 5_000;

/**
 * The tail of a Redis Cluster. One blocking XREAD cannot cover logs in different slots, nor one
 * connection block on every node, so on a cluster each append announces the log's new last
 * position on a sharded channel named like the log (in the log's slot: the append script
 * publishes it with the write). A wait subscribes to the channels of the logs it follows (ioredis
 * holds one subscriber connection per master, whatever their number) and reads what is new with
 * XRANGE. A log's channel stays subscribed a while after its last wait, so that a listener going
 * from one wait to the next does not subscribe every time.
 */
export class ShardTail implements Tail {
  readonly #cluster: Cluster;
  readonly #logs = new Map<string, FollowedLog>();
  #sweep: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(cluster: Cluster) {
    this.#cluster = cluster;
    cluster.on('smessage', (channel: string, message: string) => {
      const log = this.#logs.get(channel);
      if (!log) return;
      const seq = Number(message);
      if (seq > log.latest) log.latest = seq;
      for (const waiter of log.waiters) {
        if (waiter.afterSeq < seq) {
          this.#fetch(channel, log);
          return;
        }
      }
    });
    // Messages were lost while the subscriptions were made again (a failover, a slot move).
    cluster.on('subscribersReady', () => {
      for (const [key, log] of this.#logs) if (log.ready && log.waiters.size > 0) this.#fetch(key, log);
    });
  }

  wait(key: string, afterSeq: number, waitMs: number, signal: AbortSignal | undefined): Promise<StreamEntry[]> {
    if (this.#closed) return Promise.reject(new SluiceError('unavailable', 'The session store is closed'));
    return new Promise((resolve, reject) => {
      const log = this.#follow(key);
      const finish = (entries: StreamEntry[] | Error): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (log.waiters.delete(waiter) && log.waiters.size === 0) log.idleSince = Date.now();
        if (entries instanceof Error) reject(entries);
        else resolve(entries);
      };
      const waiter: Waiter = { afterSeq, done: finish };
      const onAbort = (): void => finish([]);
      const timer = setTimeout(onAbort, waitMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      log.waiters.add(waiter);
      // Announced before this wait began (between the caller's read and now): read it.
      if (log.ready && log.latest > afterSeq) this.#fetch(key, log);
    });
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#sweep);
    this.#sweep = undefined;
    const closed = new SluiceError('unavailable', 'The session store is closed');
    for (const log of this.#logs.values()) for (const waiter of [...log.waiters]) waiter.done(closed);
    this.#logs.clear();
  }

  /** The log's entry, subscribing to its channel the first time. */
  #follow(key: string): FollowedLog {
    const known = this.#logs.get(key);
    if (known) return known;
    const followed: FollowedLog = { waiters: new Set(), subscribed: undefined, ready: false, latest: 0, fetching: false, fetchAgain: false, idleSince: 0 };
    this.#logs.set(key, followed);
    this.#sweep ??= setInterval(() => this.#unsubscribeIdle(), LINGER_MS).unref();
    followed.subscribed = this.#cluster.ssubscribe(key).then(
      () => {
        followed.ready = true;
        // Entries appended before the subscription was made were never announced to it.
        if (followed.waiters.size > 0) this.#fetch(key, followed);
      },
      (error: unknown) => {
        if (this.#logs.get(key) === followed) this.#logs.delete(key);
        this.#fail(followed, error);
      },
    );
    return followed;
  }

  /** Reads the log after the earliest position waited on and hands each waiter what is new to it. */
  #fetch(key: string, log: FollowedLog): void {
    if (log.fetching) {
      log.fetchAgain = true;
      return;
    }
    let from = Number.POSITIVE_INFINITY;
    for (const waiter of log.waiters) from = Math.min(from, waiter.afterSeq);
    if (from === Number.POSITIVE_INFINITY) return;
    log.fetching = true;
    this.#cluster.xrange(key, `(0-${from}`, '+').then(
      (entries) => {
        log.fetching = false;
        for (const waiter of [...log.waiters]) {
          const after = entries.filter(([id]) => seqOf(id) > waiter.afterSeq);
          if (after.length > 0) waiter.done(after);
        }
        if (log.fetchAgain) {
          log.fetchAgain = false;
          this.#fetch(key, log);
        }
      },
      (error: unknown) => {
        log.fetching = false;
        log.fetchAgain = false;
        this.#fail(log, error);
      },
    );
  }

  #fail(log: FollowedLog, error: unknown): void {
    const failure = new SluiceError('unavailable', 'The session store is unavailable; try again shortly', { cause: error });
    for (const waiter of [...log.waiters]) waiter.done(failure);
  }

  #unsubscribeIdle(): void {
    const now = Date.now();
    for (const [key, log] of this.#logs) {
      if (log.waiters.size > 0 || now - log.idleSince < LINGER_MS || !log.ready) continue;
      this.#logs.delete(key);
      this.#cluster.sunsubscribe(key).catch(() => undefined);
    }
    if (this.#logs.size === 0) {
      clearInterval(this.#sweep);
      this.#sweep = undefined;
    }
  }
}
