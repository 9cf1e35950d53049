import type { Redis } from 'ioredis';
import type { Logger } from 'pino';

export interface ReplicaWaitOptions {
  /** Replicas that must have a write before it counts as done. */
  readonly replicas: number;
  /** How long one WAIT waits for them. */
  readonly timeoutMs: number;
  readonly logger: Logger;
}

/** After a WAIT that timed out (no replica is there), writes go on without waiting this long. */
const DEGRADED_MS = 5_000;

/**
 * Writes that must survive a failover of the primary. Redis replicates asynchronously: a write the
 * primary acknowledged can be lost when it dies and a replica that had not received it yet takes
 * over. These writes go through a connection of their own, each followed by `WAIT <replicas>`,
 * which returns once that many replicas have everything written before it (on any connection: a
 * replica receives the primary's writes in order). The WAITs asked for in one turn of the event
 * loop are one. When no replica answers in time (none is connected: after a failover, until the
 * old primary comes back as a replica), the writes go on without waiting for a while, with a
 * warning, rather than each one waiting out the timeout.
 */
export class ReplicaWait {
  readonly #client: Redis;
  readonly #o: ReplicaWaitOptions;
  #next: Promise<void> | undefined;
  #degradedUntil = 0;

  constructor(client: Redis, options: ReplicaWaitOptions) {
    if (!Number.isInteger(options.replicas) || options.replicas < 1)
      throw new RangeError(`replica wait: replicas must be a positive integer, got ${options.replicas}`);
    if (!Number.isInteger(options.timeoutMs) || options.timeoutMs < 1)
      throw new RangeError(`replica wait: timeoutMs must be a positive integer, got ${options.timeoutMs}`);
    this.#client = client;
    this.#o = options;
  }

  /** The connection the writes go through (so that one WAIT on it covers them). */
  get client(): Redis {
    return this.#client;
  }

  /** Resolves once the replicas have every write this connection made so far (or WAIT gave up). */
  replicated(): Promise<void> {
    if (Date.now() < this.#degradedUntil) return Promise.resolve();
    // One WAIT for every caller of this turn: it is sent after all of their writes completed.
    this.#next ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
      this.#next = undefined;
      return this.#wait();
    });
    return this.#next;
  }

  async #wait(): Promise<void> {
    const acked = await this.#client.wait(this.#o.replicas, this.#o.timeoutMs);
    if (acked >= this.#o.replicas) return;
    this.#degradedUntil = Date.now() + DEGRADED_MS;
    this.#o.logger.warn(
      { replicas: this.#o.replicas, acked, timeoutMs: this.#o.timeoutMs },
      'Redis replicas did not confirm writes in time; a failover now could lose the latest ones (not waiting again for 5 s)',
    );
  }
}
