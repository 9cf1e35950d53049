/**
 * Waits between the tokens of one stream. `timers/promises`' setTimeout with a signal adds and
 * removes an abort listener and makes a new timer for every token; a stream at 50 ms a token does
 * that 20 times a second, for each of thousands of streams. A pacer listens for the abort once,
 * and re-arms one timer.
 */
export class Pacer {
  readonly #signal: AbortSignal;
  #timer: NodeJS.Timeout | undefined;
  #resolve: (() => void) | undefined;
  #reject: ((reason: unknown) => void) | undefined;
  /** The timer's duration: a wait of the same length re-arms it instead of making a new one. */
  #ms = -1;

  constructor(signal: AbortSignal) {
    this.#signal = signal;
    signal.addEventListener('abort', this.#onAbort, { once: true });
  }

  /** Resolves after `ms`; rejects with the signal's reason if it aborts first (or already has). */
  wait(ms: number): Promise<void> {
    if (this.#signal.aborted) return Promise.reject(this.#signal.reason);
    if (this.#resolve) return Promise.reject(new Error('Pacer.wait: one wait at a time'));
    return new Promise<void>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
      if (this.#timer && ms === this.#ms) this.#timer.refresh();
      else {
        clearTimeout(this.#timer);
        this.#ms = ms;
        this.#timer = setTimeout(this.#fire, ms);
      }
    });
  }

  /** Lets go of the timer and the signal; safe to call twice. */
  close(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#signal.removeEventListener('abort', this.#onAbort);
    this.#settle()?.reject(this.#signal.reason ?? new Error('Pacer closed'));
  }

  readonly #fire = (): void => {
    this.#settle()?.resolve();
  };

  readonly #onAbort = (): void => {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#settle()?.reject(this.#signal.reason);
  };

  #settle(): { resolve: () => void; reject: (reason: unknown) => void } | undefined {
    const resolve = this.#resolve;
    const reject = this.#reject;
    this.#resolve = this.#reject = undefined;
    return resolve && reject ? { resolve, reject } : undefined;
  }
}
