import { ExpiringMap } from '../memory/expiring-map.ts';
import type { Settlement, Signals } from '../signals.ts';

type Mark = 'c' | 's' | 'o';

/** Signals within this process. */
export class MemorySignals implements Signals {
  readonly #cancelHandlers = new Set<(generationId: string) => void>();
  /** Per generation: cancelled ('c'), settled by its owner ('s') or as an orphan ('o'), until the mark expires. */
  readonly #marks = new ExpiringMap<Mark>();

  /** Marks held, live or expired but not swept yet: what they cost. */
  get size(): number {
    return this.#marks.size;
  }

  async requestCancel(generationId: string, ttlMs: number): Promise<boolean> {
    if (this.#marks.get(generationId)) return false;
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
    if (mark === 'o') {
      if (orphan) return 'settled';
      this.#set(generationId, 'o', ttlMs);
      return 'ended';
    }
    if (orphan) this.#set(generationId, 'o', orphan.endingTtlMs);
    else this.#set(generationId, 's', ttlMs);
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
  }

  #set(generationId: string, mark: Mark, ttlMs: number): void {
    // Expired marks go as new ones come: the map holds about one mark per reply of the last ttlMs
    // (a cancel's longer one only until its reply settles, which sets it again with that TTL).
    const now = Date.now();
    this.#marks.set(generationId, mark, now + ttlMs, now);
  }
}
