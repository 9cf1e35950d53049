import type { Logger } from 'pino';
import type { Generation } from './generation.ts';
import type { History } from './store/history.ts';

export interface CheckpointsOptions {
  readonly history: History;
  /** How often the text of every running reply is saved (a crash loses at most about this much). */
  readonly intervalMs: number;
  readonly logger: Logger;
}

/**
 * Saves the text of this instance's running replies as drafts in history, on one timer for all of
 * them, so that a process that dies mid-reply leaves the reply there (`interrupted`, its text up to
 * the last checkpoint). A reply's final message replaces its draft; only replies that grew since
 * the last tick are written.
 */
export class Checkpoints {
  readonly #o: CheckpointsOptions;
  /** Running replies, with the number of deltas their last checkpoint held. */
  readonly #running = new Map<Generation, number>();
  #timer: NodeJS.Timeout | undefined;
  #failing = false;

  constructor(options: CheckpointsOptions) {
    if (!Number.isInteger(options.intervalMs) || options.intervalMs < 1) {
      throw new RangeError(`checkpoints: intervalMs must be a positive integer, got ${options.intervalMs}`);
    }
    this.#o = options;
  }

  track(generation: Generation): void {
    this.#running.set(generation, 0);
    this.#timer ??= setInterval(() => this.#tick(), this.#o.intervalMs).unref();
  }

  /** No more checkpoints for this reply (its final message is about to be stored). */
  untrack(generation: Generation): void {
    this.#running.delete(generation);
    if (this.#running.size === 0) this.stop();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #tick(): void {
    for (const [generation, saved] of this.#running) {
      const { deltas, text } = generation.draft();
      if (deltas === saved) continue;
      this.#running.set(generation, deltas);
      this.#o.history.checkpoint(generation.sessionKey, generation.id, text).then(
        () => (this.#failing = false),
        (error: unknown) => {
          // One line per outage, not one per reply and tick.
          if (!this.#failing) this.#o.logger.warn({ err: error }, 'could not checkpoint running replies');
          this.#failing = true;
        },
      );
    }
  }
}
