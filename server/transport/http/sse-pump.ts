import type { ServerResponse } from 'node:http';
import type { StreamEvent } from '../../../shared/stream-events.ts';
import type { Listener, TrackedEvent } from '../../core/generation.ts';
import type { Metrics } from '../../observability/metrics.ts';
import type { Sink } from '../backpressure.ts';
import { flushNow } from './flush.ts';

export interface SsePumpOptions {
  readonly res: ServerResponse;
  readonly listener: Listener;
  /** An event the route already took from the listener (to choose its status): it goes out first. */
  readonly first?: TrackedEvent;
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
  /** Where the stream is counted (active streams, events sent), under `transport`. */
  readonly metrics: Metrics;
  readonly transport: string;
}

/**
 * Writes a listener's events to an SSE response until the terminal event, then ends it. Everything
 * already in the log goes out in one write, a batch stops at the reader's room (so buffering stays
 * within one frame of the high-water mark), and a reader that stays full is waited for, then cut
 * off after the send timeout. The listener is closed on every way out, and at once when the client
 * leaves (which ends a pending wait).
 */
export async function pumpSse(o: SsePumpOptions): Promise<void> {
  const { res, listener, sink } = o;
  let sent = 0;
  o.metrics.streamOpened(o.transport);
  // The response's own 'close' rather than an AbortSignal: a signal and its listener cost more than
  // the rest of a request's bookkeeping, and nothing here needs one.
  const onClose = (): void => listener.close();
  res.once('close', onClose);
  // The client left while the stream was being opened.
  if (res.destroyed) listener.close();
  // Keep-alive comments for proxies; a reader that is already behind does not need them.
  const ping =
    o.ping.everyMs > 0
      ? setInterval(() => {
          if (res.writableLength === 0) res.write(o.ping.frame());
        }, o.ping.everyMs)
      : undefined;
  let opening = o.opening;
  let openLater: NodeJS.Immediate | undefined;
  try {
    const already = o.first ?? listener.poll();
    if (!already) {
      openLater = setImmediate(() => {
        if (opening) res.write(opening);
        else res.flushHeaders();
        opening = '';
      });
    }
    let first = true;
    let ended = false;
    for (let next = already ? { done: false as const, value: already } : await listener.next(); !next.done; next = await listener.next()) {
      let frames = opening + o.frame(next.value.event, next.value.id);
      opening = '';
      sent++;
      ended = next.value.event.type !== 'delta';
      const room = sink.room();
      while (!ended && frames.length < room) {
        const more = listener.poll();
        if (!more) break;
        frames += o.frame(more.event, more.id);
        sent++;
        ended = more.event.type !== 'delta';
      }
      if (first) clearImmediate(openLater);
      if (ended) {
        res.write(o.trailer ? frames + o.trailer : frames);
        break;
      }
      res.write(frames);
      if (first) {
        first = false;
        flushNow(res);
      }
      if (!sink.hasRoom() && !(await sink.ready())) break;
    }
    res.end();
  } finally {
    res.off('close', onClose);
    clearImmediate(openLater);
    clearInterval(ping);
    listener.close();
    o.metrics.streamClosed(o.transport, sent);
  }
}
