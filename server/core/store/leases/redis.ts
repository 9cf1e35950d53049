import type { LeaseStore } from '../lease-store.ts';
import type { RedisConnection } from '../redis/connection.ts';

/** Leases in keys with expiry (changed only by their holder, in scripts), slots in sorted sets, windows in counters. */
export class RedisLeaseStore implements LeaseStore {
  readonly #c: RedisConnection;

  constructor(connection: RedisConnection) {
    this.#c = connection;
  }

  acquire(key: string, holder: string, ttlMs: number): Promise<boolean> {
    return this.#c.call(async (redis) => (await redis.acquireLease(this.#c.key('lease', key), holder, ttlMs)) === 1);
  }

  refresh(key: string, holder: string, ttlMs: number): Promise<boolean> {
    return this.#c.call(async (redis) => (await redis.refreshLease(this.#c.key('lease', key), holder, ttlMs)) === 1);
  }

  release(key: string, holder: string): Promise<void> {
    return this.#c.call(async (redis) => {
      await redis.releaseLease(this.#c.key('lease', key), holder);
    });
  }

  holder(key: string): Promise<string | undefined> {
    return this.#c.call(async (redis) => (await redis.get(this.#c.key('lease', key))) ?? undefined);
  }

  acquireSlot(key: string, member: string, limit: number, ttlMs: number): Promise<boolean> {
    return this.#c.call(async (redis) => {
      const now = Date.now();
      return (await redis.acquireSlot(this.#c.key('slot', key), now, member, limit, now + ttlMs, ttlMs * 2)) === 1;
    });
  }

  refreshSlot(key: string, member: string, ttlMs: number): Promise<boolean> {
    return this.#c.call(async (redis) => (await redis.refreshSlot(this.#c.key('slot', key), member, Date.now() + ttlMs, ttlMs * 2)) === 1);
  }

  releaseSlot(key: string, member: string): Promise<void> {
    return this.#c.call(async (redis) => {
      await redis.zrem(this.#c.key('slot', key), member);
    });
  }

  hitWindow(key: string, windowMs: number): Promise<{ count: number; resetInMs: number }> {
    return this.#c.call(async (redis) => {
      const [count, pttl] = (await redis.hitWindow(this.#c.key('rl', key), windowMs)) as [number, number];
      return { count, resetInMs: pttl > 0 ? pttl : windowMs };
    });
  }
}
