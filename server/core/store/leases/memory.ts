import type { LeaseStore } from '../lease-store.ts';

const expired = (until: number, now = Date.now()): boolean => until <= now;

/** Leases and limits in this process. Expired entries are dropped as they are met, and swept as maps grow. */
export class MemoryLeaseStore implements LeaseStore {
  readonly #leases = new Map<string, { holder: string; until: number }>();
  readonly #slots = new Map<string, Map<string, number>>();
  readonly #windows = new Map<string, { count: number; endsAt: number }>();

  async acquire(key: string, holder: string, ttlMs: number): Promise<boolean> {
    const lease = this.#leases.get(key);
    if (lease && lease.holder !== holder && !expired(lease.until)) return false;
    if (!lease && this.#leases.size > 10_000) this.#sweepLeases();
    this.#leases.set(key, { holder, until: Date.now() + ttlMs });
    return true;
  }

  async refresh(key: string, holder: string, ttlMs: number): Promise<boolean> {
    const lease = this.#leases.get(key);
    if (!lease || lease.holder !== holder || expired(lease.until)) return false;
    lease.until = Date.now() + ttlMs;
    return true;
  }

  async release(key: string, holder: string): Promise<void> {
    if (this.#leases.get(key)?.holder === holder) this.#leases.delete(key);
  }

  async holder(key: string): Promise<string | undefined> {
    const lease = this.#leases.get(key);
    return lease && !expired(lease.until) ? lease.holder : undefined;
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
    let window = this.#windows.get(key);
    if (!window || expired(window.endsAt, now)) {
      if (this.#windows.size > 10_000) for (const [k, w] of this.#windows) if (expired(w.endsAt, now)) this.#windows.delete(k);
      window = { count: 0, endsAt: now + windowMs };
      this.#windows.set(key, window);
    }
    window.count++;
    return { count: window.count, resetInMs: window.endsAt - now };
  }

  #sweepLeases(): void {
    const now = Date.now();
    for (const [key, lease] of this.#leases) if (expired(lease.until, now)) this.#leases.delete(key);
  }
}
