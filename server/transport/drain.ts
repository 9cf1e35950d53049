import { isTerminalEvent } from '../../shared/stream-events.ts';
import type { Listener, TrackedEvent } from '../core/generation.ts';
import type { Sink } from './backpressure.ts';

/** Streams opened and closed, and events sent, by transport. */
export interface StreamMetrics {
  streamOpened(transport: string): void;
  streamClosed(transport: string, eventsSent: number): void;
}

/**
 * A transport's framing of one stream: the drain loop decides what to send and when; the outlet
 * only turns events into its wire's bytes.
 */
export interface Outlet {
  /** False once the reader is gone: nothing more is written. */
  isOpen(): boolean;
  /** Bytes the reader can still take, counting what this batch already holds. */
  room(): number;
  /** Frames one event into the batch being written. */
  add(event: TrackedEvent): void;
  /** Writes the batch; `last` when it ends with the terminal event. */
  flush(last: boolean): void;
  /** The loop is about to wait for an event that is not there yet (the model is thinking). */
  waiting?(): void;
  /** The loop is over, however it ended: let go of timers and listeners. */
  close?(): void;
}

export interface DrainOptions {
  readonly listener: Listener;
  readonly outlet: Outlet;
  readonly sink: Sink;
  readonly metrics: StreamMetrics;
  readonly transport: string;
  /** An event already taken from the listener (to choose a status): it goes out first. */
  readonly first?: TrackedEvent | undefined;
  /** Ends a wait for the reader's room (the client left). */
  readonly signal?: AbortSignal | undefined;
}

/**
 * The one loop from a listener to a client, for every transport. Everything already in the log goes
 * out in one batch, which stops at the reader's room (so buffering stays within one frame of the
 * high-water mark); a reader that stays full is waited for, then cut off after the send timeout.
 * The listener is closed on every way out.
 *
 * A loop of callbacks rather than an async function: at a model's pace every event comes alone, and
 * an awaited promise per event (and the async frame it resumes) was a third of a held stream's CPU
 * beyond the raw writer's. The listener calls the loop back when it has more (Listener.onReady).
 */
export function drain(o: DrainOptions): Promise<void> {
  return new Promise<void>((resolve, reject) => new DrainLoop(o, resolve, reject).run());
}

class DrainLoop {
  readonly #o: DrainOptions;
  readonly #resolve: () => void;
  readonly #reject: (error: unknown) => void;
  #next: TrackedEvent | undefined;
  #sent = 0;
  #done = false;
  readonly #wake = (error?: unknown): void => {
    if (error === undefined) this.run();
    else this.#finish(error);
  };
  readonly #resume = (room: boolean): void => {
    if (room) this.run();
    else this.#finish();
  };
  readonly #fail = (error: unknown): void => this.#finish(error);

  constructor(o: DrainOptions, resolve: () => void, reject: (error: unknown) => void) {
    this.#o = o;
    this.#resolve = resolve;
    this.#reject = reject;
    this.#next = o.first;
    o.metrics.streamOpened(o.transport);
  }

  run(): void {
    const { listener, outlet, sink } = this.#o;
    try {
      for (;;) {
        const next = this.#next ?? listener.poll();
        this.#next = undefined;
        if (!next) {
          if (listener.over) return this.#finish();
          outlet.waiting?.();
          listener.onReady(this.#wake);
          return;
        }
        if (!outlet.isOpen()) return this.#finish();
        outlet.add(next);
        this.#sent++;
        let last = isTerminalEvent(next.event);
        // The room is asked before an event is taken: one taken ahead would go out after a stop.
        while (!last && outlet.room() > 0) {
          const more = listener.poll();
          if (!more) break;
          outlet.add(more);
          this.#sent++;
          last = isTerminalEvent(more.event);
        }
        outlet.flush(last);
        if (last) return this.#finish();
        if (!sink.hasRoom()) {
          sink.ready(this.#o.signal).then(this.#resume, this.#fail);
          return;
        }
      }
    } catch (error) {
      this.#finish(error);
    }
  }

  #finish(error?: unknown): void {
    if (this.#done) return;
    this.#done = true;
    const { listener, outlet, metrics, transport } = this.#o;
    try {
      outlet.close?.();
      listener.close();
      metrics.streamClosed(transport, this.#sent);
    } catch (failure) {
      error ??= failure;
    }
    if (error === undefined) this.#resolve();
    else this.#reject(error);
  }
}

/**
 * The drain loop for a consumer that writes what it is handed (tRPC's own adapters, through the
 * router's generator): each batch is handed over whole, and the loop waits for the consumer to
 * take it before it reads on, so that nothing queues between the two.
 */
export async function* drainBatches(o: Omit<DrainOptions, 'outlet'>): AsyncGenerator<TrackedEvent[]> {
  let batch: TrackedEvent[] = [];
  const handed: TrackedEvent[][] = [];
  let open = true;
  let finished = false;
  let failure: { readonly error: unknown } | undefined;
  let wake: (() => void) | undefined;
  let taken: (() => void) | undefined;
  const notify = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const release = (): void => {
    const t = taken;
    taken = undefined;
    t?.();
  };
  const loop = drain({
    ...o,
    outlet: {
      isOpen: () => open,
      room: () => o.sink.room(),
      add: (event) => batch.push(event),
      flush: () => {
        handed.push(batch);
        batch = [];
        notify();
      },
    },
    sink: {
      hasRoom: () => handed.length === 0 && o.sink.hasRoom(),
      room: () => o.sink.room(),
      ready: async (signal) => {
        if (handed.length > 0) await new Promise<void>((resolve) => (taken = resolve));
        return open && o.sink.ready(signal);
      },
    },
  });
  void loop.then(
    () => {
      finished = true;
      notify();
    },
    (error: unknown) => {
      failure = { error };
      finished = true;
      notify();
    },
  );
  try {
    for (;;) {
      const next = handed.shift();
      if (next) {
        yield next;
        if (handed.length === 0) release();
        continue;
      }
      if (finished) {
        if (failure) throw failure.error;
        return;
      }
      await new Promise<void>((resolve) => (wake = resolve));
    }
  } finally {
    open = false;
    o.listener.close();
    release();
    await loop.catch(() => undefined);
  }
}
