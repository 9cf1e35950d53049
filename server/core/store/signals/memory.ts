import { ExpiringMap } from '../memory/expiring-map.ts';
import type { Settlement, Signals } from '../signals.ts';

type Mark = 'c' | 's' | 'o';

/** Signals within this process. */
export class MemorySignals implements Signals {
  readonly #cancelHandlers = new Set<(generationId: string) => void>();
  /** Per generation: cancelled ('c'), settled ('s'), or ended as an orphan once its owner knows it ('o'), for minutes. */
  readonly #marks = new ExpiringMap<Mark>();
  /**
   * Orphans' endings not yet seen by their owners, kept for as long as those may wake (a day): a
   * map of their own, since the other's sweep stops at its first live entry, and one of these at
   * its front would keep every mark after it for that day.
   */
  readonly #endings = new ExpiringMap<true>();

  /** Marks held, live or expired but not swept yet: what they cost. */
  get size(): number {
    return this.#marks.size + this.#endings.size;
  }

  async requestCancel(generationId: string, ttlMs: number): Promise<boolean> {
    if (this.#marks.get(generationId) || this.#endings.get(generationId)) return false;
    this.#set(generationId, 'c', ttlMs);
    for (const handler of this.#cancelHandlers) handler(generationId);
    return true;
  }

  async settle(generationId: string, ttlMs: number, orphan?: { readonly endingTtlMs: number }): Promise<Settlement> {
    const mark = this.#marks.get(generationId);
    // A cancel's mark was made to last as long as a reply may run: once read, it lasts as a settled one.
    if (mark === 'c') {
      this.#set(generationId, 'c', ttlMs);
      return 'cancelled';
    }
    if (mark === 'o' || this.#endings.get(generationId)) {
      if (orphan) return 'settled';
      // Its owner knows now: the mark lasts as a settled one.
      this.#endings.delete(generationId);
      this.#set(generationId, 'o', ttlMs);
      return 'ended';
    }
    if (orphan) {
      const now = Date.now();
      this.#endings.set(generationId, true, now + orphan.endingTtlMs, now);
    } else this.#set(generationId, 's', ttlMs);
    return 'settled';
  }

  async cancelled(generationIds: readonly string[]): Promise<string[]> {
    return generationIds.filter((id) => this.#marks.get(id) === 'c');
  }

  onCancel(handler: (generationId: string) => void): () => void {
    this.#cancelHandlers.add(handler);
    return () => this.#cancelHandlers.delete(handler);
  }

  // Nothing is ever missed within one process.
  onResubscribed(): () => void {
    return () => undefined;
  }

  close(): void {
    this.#cancelHandlers.clear();
    this.#marks.clear();
    this.#endings.clear();
  }

  #set(generationId: string, mark: Mark, ttlMs: number): void {
    // Expired marks go as new ones come: the map holds about one mark per reply of the last ttlMs
    // (a cancel's longer one only until its reply settles, which sets it again with that TTL).
    const now = Date.now();
    this.#marks.set(generationId, mark, now + ttlMs, now);
  }
}
