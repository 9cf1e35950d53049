import type { Redis } from 'ioredis';
import type { Logger } from 'pino';

export interface ReplicaWaitOptions {
  /** Replicas that must have a write before it counts as done. */
  readonly replicas: number;
  /** How long one WAIT waits for them. */
  readonly timeoutMs: number;
  readonly logger: Logger;
}

/** After a WAIT that timed out (no replica is there), writes go on without waiting; checked again this often. */
const DEGRADED_MS = 5_000;

/**
 * Writes that must survive a failover of the primary. Redis replicates asynchronously: a write the
 * primary acknowledged can be lost when it dies and a replica that had not received it yet takes
 * over. These writes go through a connection of their own, each followed by `WAIT <replicas>`,
 * which returns once that many replicas have everything written before it (on any connection: a
 * replica receives the primary's writes in order). The WAITs asked for in one turn of the event
 * loop are one. When no replica answers in time (none is connected: after a failover, until the
 * old primary comes back as a replica), the writes go on without waiting, with a warning, until
 * the primary has enough replicas again (checked every few seconds), rather than each one
 * waiting out the timeout.
 */
export class ReplicaWait {
  readonly #client: Redis;
  readonly #o: ReplicaWaitOptions;
  #next: Promise<void> | undefined;
  /** Until when writes do not wait (0: they do; in the past: check the replicas first). */
  #degradedUntil = 0;
  #warned = false;

  constructor(client: Redis, options: ReplicaWaitOptions) {
    if (!Number.isInteger(options.replicas) || options.replicas < 1)
      throw new RangeError(`replica wait: replicas must be a positive integer, got ${options.replicas}`);
    if (!Number.isInteger(options.timeoutMs) || options.timeoutMs < 1)
      throw new RangeError(`replica wait: timeoutMs must be a positive integer, got ${options.timeoutMs}`);
    this.#client = client;
    this.#o = options;
    // On every (re)connection, perhaps to a new primary after a failover, whose replicas may not be
    // there yet: the next write checks first, instead of waiting out the timeout.
    client.on('ready', () => {
      this.#degradedUntil = Math.max(this.#degradedUntil, 1);
    });
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
    // Back from a degraded spell: wait again only once enough replicas are connected, rather than
    // have a write wait out the timeout to learn that they are not.
    if (this.#degradedUntil > 0) {
      const connected = await this.#connectedReplicas();
      if (connected < this.#o.replicas) {
        this.#degrade(connected);
        return;
      }
      this.#degradedUntil = 0;
      if (this.#warned) this.#o.logger.info({ replicas: connected }, 'Redis replicas are back; writes that start and end a turn wait for them again');
      this.#warned = false;
    }
    const acked = await this.#client.wait(this.#o.replicas, this.#o.timeoutMs);
    if (acked < this.#o.replicas) this.#degrade(acked);
  }

  #degrade(replicas: number): void {
    this.#degradedUntil = Date.now() + DEGRADED_MS;
    if (this.#warned) return;
    this.#warned = true;
    this.#o.logger.warn(
      { wanted: this.#o.replicas, replicas, timeoutMs: this.#o.timeoutMs },
      'Redis replicas are missing or late: writes go on without waiting for them (a failover now could lose the latest), until they are back',
    );
  }

  /** How many replicas the primary has connected (ROLE lists them). */
  async #connectedReplicas(): Promise<number> {
    const role = await this.#client.role();
    return role[0] === 'master' && Array.isArray(role[2]) ? role[2].length : 0;
  }
}
