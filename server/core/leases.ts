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

const NOTHING_HELD: Held = { release: async () => undefined };

/**
 * What this instance holds in the lease store (session locks, liveness marks of its generations,
 * slots of streams and WebSocket connections per key), and the one heartbeat that keeps them.
 */
export class Leases {
  readonly #store: LeaseStore;
  readonly #ttlMs: number;
  readonly #logger: Logger;
  readonly #held = new Set<Hold>();
  #heartbeat: NodeJS.Timeout | undefined;
  readonly #ctx: HoldContext;

  constructor(options: LeasesOptions) {
    if (!Number.isInteger(options.ttlMs) || options.ttlMs < 3) throw new RangeError(`leases: ttlMs must be an integer of at least 3, got ${options.ttlMs}`);
    this.#store = options.store;
    this.#ttlMs = options.ttlMs;
    this.#logger = options.logger;
    this.#ctx = { store: this.#store, logger: this.#logger, forget: (lease) => this.#forget(lease) };
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
    const lease = new Lease(this.#ctx, aliveKey(generationId), generationId, this.#ttlMs);
    await lease.take();
    return this.#hold(lease);
  }

  async isAlive(generationId: string): Promise<boolean> {
    return (await this.#store.holder(aliveKey(generationId))) !== undefined;
  }

  /**
   * True when a generation's liveness mark is missing and has been seen missing, by any instance,
   * for half the TTL. One read proves nothing: a Redis failover that outlasts the mark, or a restart
   * that lost it, leaves a live reply without it until its instance takes it back at its next
   * heartbeat (a third of the TTL). The first sighting opens that window in the store, so that a
   * request decides at once (false: the reply counts as running) and a later one, on any
   * instance, after the window. The sighting lasts as long as a dead reply's lock may (a client
   * may come back much later); an instance that takes its mark back clears it, so that a later
   * loss opens a window of its own.
   */
  async seenDead(generationId: string): Promise<boolean> {
    if (await this.isAlive(generationId)) return false;
    const window = suspectKey('window', generationId);
    const sighted = suspectKey('sighted', generationId);
    if ((await this.#store.holder(sighted)) === undefined) {
      // The window first: whoever finds the sighting finds its window too, until it has passed.
      await this.#store.acquire(window, SUSPECT, Math.ceil(this.#ttlMs / 2));
      await this.#store.acquire(sighted, SUSPECT, SIGHTING_TTL_MS);
      // Taken back meanwhile (it may have cleared the sighting before this one was made): none stays.
      if (await this.isAlive(generationId)) await this.forgetSighting(generationId);
      return false;
    }
    if ((await this.#store.holder(window)) !== undefined) return false;
    return !(await this.isAlive(generationId));
  }

  /** Clears a sighting of a generation's mark missing: its reply lives, or has been ended. */
  async forgetSighting(generationId: string): Promise<void> {
    await Promise.all([this.#store.release(suspectKey('sighted', generationId), SUSPECT), this.#store.release(suspectKey('window', generationId), SUSPECT)]);
  }

  /**
   * Takes a session's lock for a generation, for `ttlMs` at a time; undefined when another
   * generation holds it. A lock that vanishes (a Redis failover that lost recent writes) is taken
   * back at the next heartbeat; if another generation has it by then, `onLost` is told.
   */
  async lockSession(sessionKey: string, generationId: string, ttlMs: number, onLost?: () => void): Promise<Held | undefined> {
    const lease = new Lease(this.#ctx, sessionLockKey(sessionKey), generationId, ttlMs, onLost);
    if (!(await lease.take())) return undefined;
    return this.#hold(lease);
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
    const slot = new Slot(this.#ctx, key, randomBytes(9).toString('base64url'), limit, this.#ttlMs);
    if (!(await slot.take())) return undefined;
    return this.#hold(slot);
  }

  /** Stops the heartbeat (what is still held then expires by itself). */
  close(): void {
    this.#held.clear();
    this.#stopHeartbeat();
  }

  #hold(lease: Hold): Held {
    this.#held.add(lease);
    this.#heartbeat ??= setInterval(() => this.#beat(), Math.max(1, Math.floor(this.#ttlMs / 3))).unref();
    return lease;
  }

  #forget(lease: Hold): void {
    this.#held.delete(lease);
    if (this.#held.size === 0) this.#stopHeartbeat();
  }

  #beat(): void {
    for (const entry of this.#held) void this.#keep(entry);
  }

  /** Refreshes one lease; one found gone is taken back, or given up (and its holder told). */
  async #keep(lease: Hold): Promise<void> {
    try {
      if (await lease.refresh()) return;
      if (!this.#held.has(lease)) return;
      if (await lease.take()) {
        this.#logger.warn({ lease: lease.key }, 'a lease had vanished; taken back');
        // A mark taken back shows its reply alive: a sighting of it missing is over (see seenDead).
        const generationId = generationOfAliveKey(lease.key);
        if (generationId !== undefined) await this.forgetSighting(generationId);
        return;
      }
      if (!this.#held.delete(lease)) return;
      this.#logger.warn({ lease: lease.key }, 'a lease was lost to another holder');
      lease.onLost?.();
    } catch {
      // The store is away: the lease is refreshed at the next beat, or expires.
    }
  }

  #stopHeartbeat(): void {
    clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
  }
}

/** What every hold of one Leases shares: one object, so that a hold is one small object, not a set of closures. */
interface HoldContext {
  readonly store: LeaseStore;
  readonly logger: Logger;
  /** Drops a released hold from the heartbeat's list. */
  readonly forget: (hold: Hold) => void;
}

/**
 * A lease or slot held. Held for every running reply, two or three at a time: an object of a
 * class, so that each is one object rather than five closures and their context.
 */
abstract class Hold implements Held {
  protected readonly ctx: HoldContext;
  readonly key: string;
  protected readonly ttlMs: number;
  /** Told when it is gone for good (another holder has it). */
  readonly onLost: (() => void) | undefined;
  #released: Promise<void> | undefined;

  constructor(ctx: HoldContext, key: string, ttlMs: number, onLost: (() => void) | undefined) {
    this.ctx = ctx;
    this.key = key;
    this.ttlMs = ttlMs;
    this.onLost = onLost;
  }

  /** Takes it, or takes it back after a refresh found it gone; false when another holder has it. */
  abstract take(): Promise<boolean>;
  abstract refresh(): Promise<boolean>;
  protected abstract letGo(): Promise<void>;

  release(): Promise<void> {
    return (this.#released ??= this.#release());
  }

  async #release(): Promise<void> {
    this.ctx.forget(this);
    await this.letGo().catch((error: unknown) => this.ctx.logger.warn({ err: error, lease: this.key }, 'could not release a lease; it expires by itself'));
  }
}

/** A session lock or a liveness mark: a key held by one holder. */
class Lease extends Hold {
  readonly #holder: string;

  constructor(ctx: HoldContext, key: string, holder: string, ttlMs: number, onLost?: () => void) {
    super(ctx, key, ttlMs, onLost);
    this.#holder = holder;
  }

  take(): Promise<boolean> {
    return this.ctx.store.acquire(this.key, this.#holder, this.ttlMs);
  }

  refresh(): Promise<boolean> {
    return this.ctx.store.refresh(this.key, this.#holder, this.ttlMs);
  }

  protected letGo(): Promise<void> {
    return this.ctx.store.release(this.key, this.#holder);
  }
}

/** One of a limited number of places under a key (streams or WebSocket connections per key). */
class Slot extends Hold {
  readonly #member: string;
  readonly #limit: number;

  constructor(ctx: HoldContext, key: string, member: string, limit: number, ttlMs: number) {
    super(ctx, key, ttlMs, undefined);
    this.#member = member;
    this.#limit = limit;
  }

  take(): Promise<boolean> {
    return this.ctx.store.acquireSlot(this.key, this.#member, this.#limit, this.ttlMs);
  }

  refresh(): Promise<boolean> {
    return this.ctx.store.refreshSlot(this.key, this.#member, this.ttlMs);
  }

  protected letGo(): Promise<void> {
    return this.ctx.store.releaseSlot(this.key, this.#member);
  }
}

const aliveKey = (generationId: string): string => `alive:${generationId}`;
/** Who first found a mark missing, and the window after that sighting (see Leases.seenDead). */
const suspectKey = (part: 'sighted' | 'window', generationId: string): string => `suspect-${part}:${generationId}`;
const SUSPECT = 'suspect';
/** As long as a session's lock may be held by a reply whose instance died (ChatService's record TTL). */
const SIGHTING_TTL_MS = 24 * 60 * 60 * 1000;
const generationOfAliveKey = (key: string): string | undefined => (key.startsWith('alive:') ? key.slice('alive:'.length) : undefined);
const sessionLockKey = (sessionKey: string): string => `session:${sessionKey}`;
