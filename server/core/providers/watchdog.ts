import type { StreamFault } from './upstream-errors.ts';

/**
 * One timer for an upstream call: first a deadline for the first token, then (after `tokenArrived`)
 * a stall limit that restarts on every chunk. When it fires it calls `onFire` once with the fault;
 * the caller aborts the request there. A limit of 0 means none.
 */
export class Watchdog {
  readonly #stallMs: number;
  readonly #onFire: (fault: StreamFault) => void;
  #timer: NodeJS.Timeout | undefined;
  #phase: 'first_token_timeout' | 'stall' = 'first_token_timeout';
  #fired: StreamFault | undefined;

  constructor(firstTokenMs: number, stallMs: number, onFire: (fault: StreamFault) => void) {
    this.#stallMs = stallMs;
    this.#onFire = onFire;
    if (firstTokenMs > 0) this.#timer = setTimeout(() => this.#fire(), firstTokenMs);
  }

  /** The fault it fired for, if it did. */
  get fired(): StreamFault | undefined {
    return this.#fired;
  }

  /** Something arrived after the first token: the stall limit starts again. */
  chunkArrived(): void {
    // refresh() re-arms the same timer: no allocation per token on the hot path.
    if (this.#phase === 'stall') this.#timer?.refresh();
  }

  /** The first token arrived: from now on only stalls count. */
  tokenArrived(): void {
    if (this.#phase === 'stall') {
      this.#timer?.refresh();
      return;
    }
    this.#phase = 'stall';
    clearTimeout(this.#timer);
    this.#timer = this.#stallMs > 0 ? setTimeout(() => this.#fire(), this.#stallMs) : undefined;
  }

  dispose(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #fire(): void {
    this.#timer = undefined;
    if (this.#fired) return;
    this.#fired = this.#phase;
    this.#onFire(this.#phase);
  }
}
