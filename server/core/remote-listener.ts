import { randomBytes } from 'node:crypto';
import { formatEventId, isTerminalEvent } from '../../shared/stream-events.ts';
import type { Listener, TrackedEvent } from './generation.ts';
import { endOrphan, type OrphanContext } from './orphans.ts';
import { SluiceError } from './errors.ts';
import { isCorruptLog, type GenerationRecord, type LoggedEvent } from './store/event-log.ts';

export interface RemoteListenerOptions extends OrphanContext {
  readonly record: GenerationRecord;
  readonly afterSeq: number;
  readonly signal: AbortSignal | undefined;
  /** How long one blocking read waits before the generation's liveness is checked. */
  readonly pollMs: number;
  /** How long a log that cannot be read is tried again (a failover) before the stream ends with an error. */
  readonly outageWaitMs: number;
  /** Presence entries expire after this; they are refreshed at a third of it. */
  readonly presenceTtlMs: number;
  /** Told when this listener starts (+1) and ends (-1). */
  readonly onListener?: (delta: 1 | -1) => void;
  /**
   * Aborted when this instance shuts down: the stream then ends with an `unavailable` error event
   * whose id is the last event's, so that its client resumes from another instance (the reply itself
   * runs on).
   */
  readonly stopping?: AbortSignal;
}

const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });
/** Waits between reads of a log that cannot be read: 50, 100, 200, 400 ms, then 500 ms each. */
const RETRY_MS = 50;
const RETRY_MAX_MS = 500;

/** A log holds less than its listener has shown (a store that lost it, its owner dead): it cannot be ended here. */
class LostLogError extends Error {
  constructor() {
    super("the reply's log lost events its clients were shown");
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * Follows a generation that runs on another instance (or ran before a restart) through the store's
 * event log. Its presence keeps the owner's resume window open. If the owner died without a final
 * event, the listener writes the `interrupted` ending and stores the partial reply, exactly once.
 */
export function remoteListener(options: RemoteListenerOptions): Listener {
  const { events, record, logger } = options;
  const controller = new AbortController();
  // Ends a pending read: the client left (`controller`), or this instance is stopping.
  const reads = new AbortController();
  const close = (): void => {
    controller.abort();
    reads.abort();
  };
  const stop = (): void => reads.abort();
  options.signal?.addEventListener('abort', close, { once: true });
  if (options.signal?.aborted) close();
  options.stopping?.addEventListener('abort', stop, { once: true });
  const listenerId = randomBytes(8).toString('base64url');
  options.onListener?.(1);
  let counted = true;
  const uncount = (): void => {
    if (counted) options.onListener?.(-1);
    counted = false;
  };

  async function* follow(): AsyncGenerator<TrackedEvent, void, undefined> {
    let seq = options.afterSeq;
    const touch = (): void => {
      events.touchListener(record.id, listenerId, options.presenceTtlMs).catch(() => undefined);
    };
    touch();
    const presence = setInterval(touch, Math.max(50, Math.floor(options.presenceTtlMs / 3)));
    let partial = '';
    // An error ending's `partial` is the reply's text so far, from its start: what came before the
    // resume point is read back from the log (best effort: a log that cannot be read gives the rest).
    const whole = async (): Promise<string> => {
      if (options.afterSeq === 0) return partial;
      try {
        const before = await events.read(record.id, 0, 0);
        let text = '';
        for (const { seq: at, event } of before) if (at <= options.afterSeq && event.type === 'delta') text += event.delta;
        return text + partial;
      } catch {
        return partial;
      }
    };
    /** Since when the log cannot be read, and the tries since. */
    let failingSince: number | undefined;
    let failures = 0;
    try {
      while (!controller.signal.aborted) {
        if (options.stopping?.aborted) {
          const failure = new SluiceError('unavailable', 'This server is shutting down; resume the reply from another');
          yield { id: formatEventId(record.id, seq), seq, event: { type: 'error', code: failure.code, message: failure.message, partial: await whole() } };
          return;
        }
        let batch: LoggedEvent[];
        try {
          batch = await events.read(record.id, seq, options.pollMs, reads.signal);
          // Stopped during the read: what it brought still goes out, then the loop's check ends it.
          if (reads.signal.aborted && batch.length === 0) continue;
          if (batch.length === 0 && !controller.signal.aborted && !(await options.leases.isAlive(record.id))) {
            // The owner's liveness mark is cleared only after its final event is logged: one more read decides.
            batch = await events.read(record.id, seq, 0);
            if (batch.length === 0) {
              const orphan = await endOrphan(options, record, seq, () => options.leases.seenDead(record.id));
              // Ended at this client's last event (a resume from the ending itself): nothing more.
              if (orphan.kind === 'ended' && orphan.seq === seq) return;
              if (orphan.kind === 'lost' || (orphan.kind === 'ended' && orphan.seq < seq)) throw new LostLogError();
              if (orphan.kind === 'ended') batch = [orphan];
            }
          }
          failingSince = undefined;
          failures = 0;
        } catch (error) {
          if (controller.signal.aborted) return;
          if (reads.signal.aborted) continue;
          // The store is away (a failover): tried again for a while, as the reply's own copies are.
          failingSince ??= performance.now();
          if (!isCorruptLog(error) && !(error instanceof LostLogError) && performance.now() - failingSince < options.outageWaitMs) {
            await pause(Math.min(RETRY_MS << failures++, RETRY_MAX_MS), controller.signal);
            continue;
          }
          // The log cannot be read (the store stays away, or an entry is corrupt): an explicit
          // ending, never a cut or internal text. Its id is the last event's: a resume picks up from there.
          logger.warn({ generationId: record.id, seq, err: error }, 'could not follow a reply');
          const failure = new SluiceError('unavailable', 'The reply could not be followed; resume it in a moment');
          yield { id: formatEventId(record.id, seq), seq, event: { type: 'error', code: failure.code, message: failure.message, partial: await whole() } };
          return;
        }
        for (const { seq: at, event } of batch) {
          // Never back, never twice: what this client has had is not sent again.
          if (at <= seq) continue;
          seq = at;
          if (event.type === 'delta') partial += event.delta;
          yield { id: formatEventId(record.id, at), seq: at, event };
          if (isTerminalEvent(event)) return;
        }
      }
    } finally {
      uncount();
      clearInterval(presence);
      options.signal?.removeEventListener('abort', close);
      options.stopping?.removeEventListener('abort', stop);
      events.dropListener(record.id, listenerId).catch(() => undefined);
      logger.debug({ generationId: record.id, seq }, 'remote listener left');
    }
  }

  const iterator = follow();
  // What onReady's read brought, until poll() takes it.
  let held: TrackedEvent | undefined;
  let over = false;
  let waiting = false;
  const listener: Listener = {
    next: () => (controller.signal.aborted ? iterator.return(undefined) : iterator.next()),
    return: () => {
      over = true;
      held = undefined;
      close();
      return iterator.return(undefined).then(() => {
        uncount();
        return DONE;
      });
    },
    close: () => {
      // Nothing more goes out once closed, not even what a read brought.
      over = true;
      held = undefined;
      close();
      // A listener closed before it was ever read has no running generator to count it down.
      void iterator.return(undefined).then(uncount);
    },
    // Remote events arrive through next(): only what a wait brought is ever waiting locally.
    poll: () => {
      const event = held;
      held = undefined;
      return event;
    },
    onReady: (wake) => {
      if (waiting) throw new Error('listener: one waiter at a time');
      waiting = true;
      listener.next().then(
        (result) => {
          waiting = false;
          if (result.done) over = true;
          else if (!over) held = result.value;
          wake();
        },
        (error: unknown) => {
          waiting = false;
          over = true;
          wake(error);
        },
      );
    },
    get over() {
      return over && held === undefined;
    },
    [Symbol.asyncIterator]: () => listener,
  };
  return listener;
}
