import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { LeaseStore } from './store/lease-store.ts';

/** A lease or slot this instance holds; the heartbeat keeps it until it is released. */
export interface Held {
  /** Lets it go (later calls do nothing). Never throws: a lease that cannot be released expires. */
  release(): Promise<void>;
}

export interface LeasesOptions {
  readonly store: LeaseStore;
  /**
   * Liveness marks and slots expire this long after their instance stops refreshing them (it
   * died); the heartbeat refreshes everything held at a third of it.
   */
  readonly ttlMs: number;
  readonly logger: Logger;
}

interface Entry {
  readonly refresh: () => Promise<boolean>;
  /** Takes the lease back after a refresh found it gone; false when another holder has it. */
  readonly retake: () => Promise<boolean>;
  readonly what: string;
  /** Told when the lease is gone for good (another holder has it). */
  readonly onLost?: (() => void) | undefined;
}

const NOTHING_HELD: Held = { release: async () => undefined };

/**
 * What this instance holds in the lease store (session locks, liveness marks of its generations,
 * slots of streams and WebSocket connections per key), and the one heartbeat that keeps them.
 */
export class Leases {
  readonly #store: LeaseStore;
  readonly #ttlMs: number;
  readonly #logger: Logger;
  readonly #held = new Set<Entry>();
  #heartbeat: NodeJS.Timeout | undefined;

  constructor(options: LeasesOptions) {
    if (!Number.isInteger(options.ttlMs) || options.ttlMs < 3) throw new RangeError(`leases: ttlMs must be an integer of at least 3, got ${options.ttlMs}`);
    this.#store = options.store;
    this.#ttlMs = options.ttlMs;
    this.#logger = options.logger;
  }

  /** How many leases and slots this instance holds now. */
  get heldCount(): number {
    return this.#held.size;
  }

  /**
   * Marks a generation alive: whoever finds its session locked and no mark knows its instance
   * died. Released once its last event is stored where others read it.
   */
  async markAlive(generationId: string): Promise<Held> {
    const key = aliveKey(generationId);
    const take = (): Promise<boolean> => this.#store.acquire(key, generationId, this.#ttlMs);
    await take();
    return this.#hold({
      what: `alive ${generationId}`,
      refresh: () => this.#store.refresh(key, generationId, this.#ttlMs),
      retake: take,
      release: () => this.#store.release(key, generationId),
    });
  }

  async isAlive(generationId: string): Promise<boolean> {
    return (await this.#store.holder(aliveKey(generationId))) !== undefined;
  }

  /**
   * Takes a session's lock for a generation, for `ttlMs` at a time; undefined when another
   * generation holds it. A lock that vanishes (a Redis failover that lost recent writes) is taken
   * back at the next heartbeat; if another generation has it by then, `onLost` is told.
   */
  async lockSession(sessionKey: string, generationId: string, ttlMs: number, onLost?: () => void): Promise<Held | undefined> {
    const key = sessionLockKey(sessionKey);
    const take = (): Promise<boolean> => this.#store.acquire(key, generationId, ttlMs);
    if (!(await take())) return undefined;
    return this.#hold({
      what: `session ${sessionKey}`,
      refresh: () => this.#store.refresh(key, generationId, ttlMs),
      retake: take,
      release: () => this.#store.release(key, generationId),
      onLost,
    });
  }

  /** The generation holding a session's lock, if any. */
  sessionHolder(sessionKey: string): Promise<string | undefined> {
    return this.#store.holder(sessionLockKey(sessionKey));
  }

  /** Frees a session from a holder that is gone (its instance died). */
  releaseSession(sessionKey: string, holder: string): Promise<void> {
    return this.#store.release(sessionLockKey(sessionKey), holder);
  }

  /** Takes one of `limit` slots of `key` (0: no limit, nothing taken); undefined when all are taken. */
  async takeSlot(key: string, limit: number): Promise<Held | undefined> {
    if (limit === 0) return NOTHING_HELD;
    const member = randomBytes(9).toString('base64url');
    const take = (): Promise<boolean> => this.#store.acquireSlot(key, member, limit, this.#ttlMs);
    if (!(await take())) return undefined;
    return this.#hold({
      what: `slot ${key}`,
      refresh: () => this.#store.refreshSlot(key, member, this.#ttlMs),
      retake: take,
      release: () => this.#store.releaseSlot(key, member),
    });
  }

  /** Stops the heartbeat (what is still held then expires by itself). */
  close(): void {
    this.#held.clear();
    this.#stopHeartbeat();
  }

  #hold(lease: Entry & { readonly release: () => Promise<void> }): Held {
    const { release, what } = lease;
    const entry: Entry = lease;
    this.#held.add(entry);
    this.#heartbeat ??= setInterval(() => this.#beat(), Math.max(1, Math.floor(this.#ttlMs / 3))).unref();
    let released: Promise<void> | undefined;
    return {
      release: () => {
        released ??= (async () => {
          this.#held.delete(entry);
          if (this.#held.size === 0) this.#stopHeartbeat();
          await release().catch((error: unknown) => this.#logger.warn({ err: error, lease: what }, 'could not release a lease; it expires by itself'));
        })();
        return released;
      },
    };
  }

  #beat(): void {
    for (const entry of this.#held) void this.#keep(entry);
  }

  /** Refreshes one lease; one found gone is taken back, or given up (and its holder told). */
  async #keep(entry: Entry): Promise<void> {
    try {
      if (await entry.refresh()) return;
      if (!this.#held.has(entry)) return;
      if (await entry.retake()) {
        this.#logger.warn({ lease: entry.what }, 'a lease had vanished; taken back');
        return;
      }
      if (!this.#held.delete(entry)) return;
      this.#logger.warn({ lease: entry.what }, 'a lease was lost to another holder');
      entry.onLost?.();
    } catch {
      // The store is away: the lease is refreshed at the next beat, or expires.
    }
  }

  #stopHeartbeat(): void {
    clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
  }
}

const aliveKey = (generationId: string): string => `alive:${generationId}`;
const sessionLockKey = (sessionKey: string): string => `session:${sessionKey}`;
