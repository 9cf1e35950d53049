import type { ServerResponse } from 'node:http';
import type { StreamEvent } from '../../../shared/stream-events.ts';
import type { Listener, TrackedEvent } from '../../core/generation.ts';
import type { TransportName } from '../admission.ts';
import type { Sink } from '../backpressure.ts';
import { drain, type Outlet, type StreamMetrics } from '../drain.ts';
import { flushNow } from './flush.ts';

export interface SseStreamOptions {
  readonly res: ServerResponse;
  readonly listener: Listener;
  /** An event the route already took from the listener (to choose its status): it goes out first. */
  readonly first?: TrackedEvent | undefined;
  readonly sink: Sink;
  /** One event as its frame, in the route's wire format. */
  readonly frame: (event: StreamEvent, id: string) => string;
  /** Written right after the terminal event (tRPC's `return`). */
  readonly trailer?: string;
  /**
   * What the stream opens with before its first event ('' for nothing but the headers; tRPC's
   * `connected`). It goes out with the first frame, in one write, when that frame is ready within
   * this turn of the event loop (a fast model); otherwise, with the headers, at the end of the turn,
   * so that the client sees the stream open while the model thinks. Nothing is written before.
   */
  readonly opening: string;
  /** Keep-alive: a frame written every `everyMs` while nothing is queued for the reader (0: none). */
  readonly ping: { readonly everyMs: number; readonly frame: () => string };
  readonly metrics: StreamMetrics;
  readonly transport: TransportName;
}

/**
 * An SSE response fed by the drain loop, then ended. The listener is closed at once when the client
 * leaves (the response's own 'close', not an AbortSignal: a signal and its listener cost more than
 * the rest of a request's bookkeeping), which ends a pending wait.
 */
export async function streamSse(o: SseStreamOptions): Promise<void> {
  const { res, listener } = o;
  const onClose = (): void => listener.close();
  res.once('close', onClose);
  if (res.destroyed) listener.close();
  try {
    const outlet = new SseOutlet(o);
    await drain({ listener, outlet, sink: o.sink, metrics: o.metrics, transport: o.transport, first: o.first });
    outlet.endUnstarted();
    res.end();
  } finally {
    res.off('close', onClose);
  }
}

class SseOutlet implements Outlet {
  readonly #o: SseStreamOptions;
  #opening: string;
  #batch = '';
  #started = false;
  #openLater: NodeJS.Immediate | undefined;
  readonly #ping: NodeJS.Timeout | undefined;

  constructor(o: SseStreamOptions) {
    this.#o = o;
    this.#opening = o.opening;
    const { res, ping } = o;
    // Keep-alive comments for proxies; a reader that is already behind does not need them.
    this.#ping =
      ping.everyMs > 0
        ? setInterval(() => {
            if (res.writableLength === 0) res.write(ping.frame());
          }, ping.everyMs)
        : undefined;
  }

  isOpen(): boolean {
    return !this.#o.res.destroyed;
  }

  room(): number {
    return this.#o.sink.room() - this.#opening.length - this.#batch.length;
  }

  add(event: TrackedEvent): void {
    this.#batch += this.#o.frame(event.event, event.id);
  }

  flush(last: boolean): void {
    const { res } = this.#o;
    let frames = this.#opening + this.#batch;
    this.#opening = '';
    this.#batch = '';
    if (last && this.#o.trailer) frames += this.#o.trailer;
    res.write(frames);
    if (!this.#started) {
      this.#started = true;
      clearImmediate(this.#openLater);
      // The first event goes out now rather than with the rest of its burst (see flushNow).
      if (!last) flushNow(res);
    }
  }

  waiting(): void {
    if (this.#started || this.#openLater) return;
    this.#openLater = setImmediate(() => {
      const { res } = this.#o;
      if (this.#opening) res.write(this.#opening);
      else res.flushHeaders();
      this.#opening = '';
    });
  }

  /**
   * A stream that ended with no event to send (resumed after its last one) still opens and ends in
   * its wire's words (tRPC's `connected`, then `return`): an EventSource reads an empty answer as a
   * drop, and reconnects with the same id for ever.
   */
  endUnstarted(): void {
    if (this.#started || this.#o.res.destroyed) return;
    const frames = this.#opening + (this.#o.trailer ?? '');
    this.#opening = '';
    if (frames) this.#o.res.write(frames);
  }

  close(): void {
    clearImmediate(this.#openLater);
    clearInterval(this.#ping);
  }
}
