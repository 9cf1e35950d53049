import { SluiceError } from './errors.ts';
import type { LeaseStore } from './store/lease-store.ts';

const MINUTE_MS = 60_000;

/** Requests per minute per owner, counted in the store so that the limit holds across instances. */
export class RateLimiter {
  readonly #store: LeaseStore;
  readonly #perMinute: number;

  constructor(store: LeaseStore, perMinute: number) {
    if (!Number.isInteger(perMinute) || perMinute < 0) {
      throw new RangeError(`rate limiter: perMinute must be a non-negative integer, got ${perMinute}`);
    }
    this.#store = store;
    this.#perMinute = perMinute;
  }

  /** Counts one request for `owner`; throws `rate_limited` (with Retry-After) over the limit. */
  async check(owner: string): Promise<void> {
    if (this.#perMinute === 0) return;
    let hit: { count: number; resetInMs: number };
    try {
      hit = await this.#store.hitWindow(`rpm:${owner}`, MINUTE_MS);
    } catch (error) {
      throw SluiceError.from(error);
    }
    if (hit.count > this.#perMinute) {
      throw new SluiceError('rate_limited', `Too many requests: the limit is ${this.#perMinute} a minute`, {
        retryAfterSeconds: Math.max(1, Math.ceil(hit.resetInMs / 1000)),
      });
    }
  }
}
