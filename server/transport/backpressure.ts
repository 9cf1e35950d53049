import type { EventEmitter } from 'node:events';

/** A reader's end of a stream, as far as flow control goes. */
export interface Sink {
  /** True when the reader has room now (at most `highWaterBytes` buffered for it). */
  hasRoom(): boolean;
  /** Bytes that may still be queued before the high-water mark (batches stop there). */
  room(): number;
  /**
   * Resolves true once the reader has room. A reader that stays full for the send timeout is cut
   * off, and this resolves false. Hot loops call it only when hasRoom() is false.
   */
  ready(signal?: AbortSignal): Promise<boolean>;
}

/** A connection's sink: also says when a reader has taken what it was sent. */
export interface ConnectionSink extends Sink {
  /**
   * Resolves once the reader has room, or is gone, however long it takes: for a reader that is
   * taking what it was sent (an answer of megabytes drains once, at its end), where `ready` would cut
   * one still behind at the send timeout. One that takes nothing is cut by the stalled-reader sweep.
   */
  caughtUp(): Promise<void>;
}

const ROOM: Promise<boolean> = Promise.resolve(true);
/** How often caughtUp looks again without a `drain` (a reader that leaves is told by `close` at once). */
const CAUGHT_UP_CHECK_MS = 60_000;

export interface SinkOptions {
  /** Bytes queued for the reader and not yet taken by the kernel. */
  readonly buffered: () => number;
  /** Emits `drain` when the queue empties. */
  readonly drains: EventEmitter;
  /** Disconnects the reader. */
  readonly cut: () => void;
  readonly highWaterBytes: number;
  readonly sendTimeoutMs: number;
}

/** Never queue without bound for a slow reader: wait for `drain`, and give up on one that stays behind. */
export function createSink(options: SinkOptions): ConnectionSink {
  return new BufferSink(options);
}

/** A class, not closures: every held stream has one (a WebSocket connection, one for all its streams). */
class BufferSink implements ConnectionSink {
  readonly #o: SinkOptions;

  constructor(options: SinkOptions) {
    this.#o = options;
  }

  hasRoom(): boolean {
    return this.#o.buffered() <= this.#o.highWaterBytes;
  }

  room(): number {
    return this.#o.highWaterBytes - this.#o.buffered();
  }

  ready(signal?: AbortSignal): Promise<boolean> {
    return this.hasRoom() ? ROOM : this.#waitForRoom(signal);
  }

  async caughtUp(): Promise<void> {
    while (!this.hasRoom()) if (!(await drainWithin(this.#o.drains, CAUGHT_UP_CHECK_MS, undefined)) && this.#gone()) return;
  }

  #gone(): boolean {
    return (this.#o.drains as { destroyed?: boolean }).destroyed === true;
  }

  async #waitForRoom(signal: AbortSignal | undefined): Promise<boolean> {
    const deadline = Date.now() + this.#o.sendTimeoutMs;
    while (!this.hasRoom()) {
      const left = deadline - Date.now();
      if (left <= 0 || !(await drainWithin(this.#o.drains, left, signal))) {
        if (signal?.aborted) return false;
        this.#o.cut();
        return false;
      }
    }
    return true;
  }
}

/**
 * Who waits for room on each emitter. The streams of one connection (a WebSocket's subscriptions)
 * share its socket: they share one `drain` and one `close` listener on it too, so that sixteen
 * waiting streams are not sixteen listeners (Node warns of a leak past ten).
 */
const waiting = new WeakMap<EventEmitter, Waiters>();

class Waiters {
  readonly #emitter: EventEmitter;
  readonly #waiters = new Set<(drained: boolean) => void>();
  readonly #onDrain = (): void => this.#wake(true);
  readonly #onClose = (): void => this.#wake(false);

  constructor(emitter: EventEmitter) {
    this.#emitter = emitter;
    emitter.on('drain', this.#onDrain);
    emitter.on('close', this.#onClose);
  }

  add(waiter: (drained: boolean) => void): void {
    this.#waiters.add(waiter);
  }

  delete(waiter: (drained: boolean) => void): void {
    this.#waiters.delete(waiter);
    if (this.#waiters.size > 0) return;
    this.#emitter.off('drain', this.#onDrain);
    this.#emitter.off('close', this.#onClose);
    waiting.delete(this.#emitter);
  }

  #wake(drained: boolean): void {
    for (const waiter of [...this.#waiters]) waiter(drained);
  }
}

function drainWithin(emitter: EventEmitter, ms: number, signal: AbortSignal | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    let waiters = waiting.get(emitter);
    if (!waiters) waiting.set(emitter, (waiters = new Waiters(emitter)));
    const joined = waiters;
    const finish = (drained: boolean): void => {
      clearTimeout(timer);
      joined.delete(finish);
      signal?.removeEventListener('abort', onAbort);
      resolve(drained);
    };
    const onAbort = (): void => finish(false);
    const timer = setTimeout(() => finish(false), ms);
    joined.add(finish);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
