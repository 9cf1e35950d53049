import type { Signals } from '../signals.ts';

/** Signals within this process. */
export class MemorySignals implements Signals {
  readonly #cancelHandlers = new Set<(generationId: string) => void>();

  async publishCancel(generationId: string): Promise<void> {
    for (const handler of this.#cancelHandlers) handler(generationId);
  }

  onCancel(handler: (generationId: string) => void): () => void {
    this.#cancelHandlers.add(handler);
    return () => this.#cancelHandlers.delete(handler);
  }

  close(): void {
    this.#cancelHandlers.clear();
  }
}
