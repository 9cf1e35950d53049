/**
 * Entries with deadlines, for the memory store's marks, leases and windows. A set moves its key to
 * the end, so the map runs in the order deadlines were given; expired entries are dropped where
 * they are met and swept from the front on every set, which stops at the first live one. Each
 * entry is thus passed over once: O(1) a set however many are live (a walk of the whole map was
 * O(n) a set). Entries given shorter deadlines than those before them wait for those to go:
 * expired, they are never returned, and the map holds at most what the longest TTL keeps.
 */
export class ExpiringMap<V> {
  readonly #entries = new Map<string, { value: V; until: number }>();
  readonly #max: number;

  /** `max`: live entries kept at most; a set beyond it lets the oldest go (default: no bound). */
  constructor(options: { readonly max?: number } = {}) {
    const max = options.max ?? Number.POSITIVE_INFINITY;
    if (!(max >= 1)) throw new RangeError(`ExpiringMap: max must be at least 1, got ${options.max}`);
    this.#max = max;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The live value, or undefined (an expired entry is dropped). */
  get(key: string, now = Date.now()): V | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (entry.until > now) return entry.value;
    this.#entries.delete(key);
    return undefined;
  }

  set(key: string, value: V, until: number, now = Date.now()): void {
    this.#entries.delete(key);
    for (const [oldest, entry] of this.#entries) {
      if (entry.until > now && this.#entries.size < this.#max) break;
      this.#entries.delete(oldest);
    }
    this.#entries.set(key, { value, until });
  }

  delete(key: string): void {
    this.#entries.delete(key);
  }

  clear(): void {
    this.#entries.clear();
  }
}
