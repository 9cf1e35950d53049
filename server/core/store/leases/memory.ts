import type { LeaseStore } from '../lease-store.ts';
import { ExpiringMap } from '../memory/expiring-map.ts';

const expired = (until: number, now = Date.now()): boolean => until <= now;

/** Leases and limits in this process. Expired entries are dropped as they are met, and swept as new ones come (see ExpiringMap). */
export class MemoryLeaseStore implements LeaseStore {
  /** Holders by key. */
  readonly #leases = new ExpiringMap<string>();
  readonly #slots = new Map<string, Map<string, number>>();
  readonly #windows = new ExpiringMap<{ count: number; readonly endsAt: number }>();

  async acquire(key: string, holder: string, ttlMs: number): Promise<boolean> {
    const now = Date.now();
    const current = this.#leases.get(key, now);
    if (current !== undefined && current !== holder) return false;
    this.#leases.set(key, holder, now + ttlMs, now);
    return true;
  }

  async refresh(key: string, holder: string, ttlMs: number): Promise<boolean> {
    const now = Date.now();
    if (this.#leases.get(key, now) !== holder) return false;
    this.#leases.set(key, holder, now + ttlMs, now);
    return true;
  }

  async release(key: string, holder: string): Promise<void> {
    if (this.#leases.get(key) === holder) this.#leases.delete(key);
  }

  async holder(key: string): Promise<string | undefined> {
    return this.#leases.get(key);
  }

  async acquireSlot(key: string, member: string, limit: number, ttlMs: number): Promise<boolean> {
    let slots = this.#slots.get(key);
    if (!slots) this.#slots.set(key, (slots = new Map<string, number>()));
    const now = Date.now();
    for (const [m, until] of slots) if (expired(until, now)) slots.delete(m);
    if (!slots.has(member) && slots.size >= limit) return false;
    slots.set(member, now + ttlMs);
    return true;
  }

  async refreshSlot(key: string, member: string, ttlMs: number): Promise<boolean> {
    const slots = this.#slots.get(key);
    if (!slots?.has(member)) return false;
    slots.set(member, Date.now() + ttlMs);
    return true;
  }

  async releaseSlot(key: string, member: string): Promise<void> {
    const slots = this.#slots.get(key);
    slots?.delete(member);
    if (slots?.size === 0) this.#slots.delete(key);
  }

  async hitWindow(key: string, windowMs: number): Promise<{ count: number; resetInMs: number }> {
    const now = Date.now();
    let window = this.#windows.get(key, now);
    if (!window) {
      window = { count: 0, endsAt: now + windowMs };
      this.#windows.set(key, window, window.endsAt, now);
    }
    window.count++;
    return { count: window.count, resetInMs: window.endsAt - now };
  }
}
