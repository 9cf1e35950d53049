import type { Logger } from 'pino';
import type { LocalGenerations } from './local-generations.ts';
import type { Signals } from './store/signals.ts';

/** How long a cancel for a generation not (yet) running here is remembered, for one that is starting. */
const EARLY_CANCEL_MS = 30_000;

/**
 * Brings every cancel to this instance's generation it names: as it is published, for a generation
 * still starting here (its lock taken, not yet launched: remembered a short while), and after the
 * subscription was re-established (the cancels missed meanwhile are asked for).
 */
export class CancelRouting {
  readonly #early = new Map<string, number>();
  readonly #unsubscribe: Array<() => void>;

  constructor(signals: Signals, local: LocalGenerations, logger: Logger) {
    this.#unsubscribe = [
      signals.onCancel((generationId) => {
        const generation = local.get(generationId);
        if (generation) generation.stop('cancelled');
        else this.#remember(generationId);
      }),
      signals.onResubscribed(() => {
        signals.cancelled(local.runningIds()).then(
          (ids) => ids.forEach((id) => local.get(id)?.stop('cancelled')),
          (error: unknown) => logger.warn({ err: error }, 'could not catch up on cancels'),
        );
      }),
    ];
  }

  /** True (once) when a cancel for this generation arrived before it was launched. */
  takeEarly(generationId: string): boolean {
    return this.#early.delete(generationId);
  }

  close(): void {
    for (const unsubscribe of this.#unsubscribe) unsubscribe();
    this.#early.clear();
  }

  #remember(generationId: string): void {
    const now = Date.now();
    if (this.#early.size >= 100) for (const [id, at] of this.#early) if (now - at > EARLY_CANCEL_MS) this.#early.delete(id);
    this.#early.set(generationId, now);
  }
}
