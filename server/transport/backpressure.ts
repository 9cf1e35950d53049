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

const ROOM: Promise<boolean> = Promise.resolve(true);

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
export function createSink(options: SinkOptions): Sink {
  const hasRoom = (): boolean => options.buffered() <= options.highWaterBytes;
  return {
    hasRoom,
    room: () => options.highWaterBytes - options.buffered(),
    ready(signal) {
      return hasRoom() ? ROOM : waitForRoom(signal);
    },
  };

  async function waitForRoom(signal: AbortSignal | undefined): Promise<boolean> {
    const deadline = Date.now() + options.sendTimeoutMs;
    while (!hasRoom()) {
      const left = deadline - Date.now();
      if (left <= 0 || !(await drainWithin(options.drains, left, signal))) {
        if (signal?.aborted) return false;
        options.cut();
        return false;
      }
    }
    return true;
  }
}

function drainWithin(emitter: EventEmitter, ms: number, signal: AbortSignal | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    const finish = (drained: boolean): void => {
      clearTimeout(timer);
      emitter.off('drain', onDrain);
      emitter.off('close', onClose);
      signal?.removeEventListener('abort', onClose);
      resolve(drained);
    };
    const onDrain = (): void => finish(true);
    const onClose = (): void => finish(false);
    const timer = setTimeout(() => finish(false), ms);
    emitter.on('drain', onDrain);
    emitter.once('close', onClose);
    signal?.addEventListener('abort', onClose, { once: true });
  });
}
