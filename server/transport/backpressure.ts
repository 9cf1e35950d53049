import type { EventEmitter } from 'node:events';

/** A reader's end of a stream, as far as flow control goes. */
export interface Sink {
  /**
   * Resolves true once the reader has room (at most `highWaterBytes` buffered for it). A reader
   * that stays full for the send timeout is cut off, and this resolves false.
   */
  ready(signal?: AbortSignal): Promise<boolean>;
}

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
  return {
    async ready(signal) {
      if (options.buffered() <= options.highWaterBytes) return true;
      const deadline = Date.now() + options.sendTimeoutMs;
      while (options.buffered() > options.highWaterBytes) {
        const left = deadline - Date.now();
        if (left <= 0 || !(await drainWithin(options.drains, left, signal))) {
          if (signal?.aborted) return false;
          options.cut();
          return false;
        }
      }
      return true;
    },
  };
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
