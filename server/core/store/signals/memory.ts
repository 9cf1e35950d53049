import { ExpiringMap } from '../memory/expiring-map.ts';
import type { Signals } from '../signals.ts';

/** Signals within this process. */
export class MemorySignals implements Signals {
  readonly #cancelHandlers = new Set<(generationId: string) => void>();
  /** Per generation: cancelled ('c') or settled ('s'), until the mark expires. */
  readonly #marks = new ExpiringMap<'c' | 's'>();

  async requestCancel(generationId: string, ttlMs: number): Promise<boolean> {
    if (this.#marks.get(generationId)) return false;
    this.#set(generationId, 'c', ttlMs);
    for (const handler of this.#cancelHandlers) handler(generationId);
    return true;
  }

  async settle(generationId: string, ttlMs: number): Promise<boolean> {
    // A cancel's mark was made to last as long as a reply may run: once read, it lasts as a settled one.
    const cancelled = this.#marks.get(generationId) === 'c';
    this.#set(generationId, cancelled ? 'c' : 's', ttlMs);
    return !cancelled;
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

  #set(generationId: string, mark: 'c' | 's', ttlMs: number): void {
    // Expired marks go as new ones come: the map holds about one mark per reply of the last ttlMs
    // (a cancel's longer one only until its reply settles, which sets it again with that TTL).
    const now = Date.now();
    this.#marks.set(generationId, mark, now + ttlMs, now);
  }
}
