import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { formatEventId, isTerminalEvent, type StreamEvent } from '../../shared/stream-events.ts';
import { ERROR_INFO } from './errors.ts';
import type { Listener, TrackedEvent } from './generation.ts';
import type { GenerationRecord, Store } from './store/store.ts';

export interface RemoteListenerOptions {
  readonly store: Store;
  readonly record: GenerationRecord;
  readonly afterSeq: number;
  readonly signal: AbortSignal | undefined;
  readonly logger: Logger;
  /** How long one blocking read waits before the generation's liveness is checked. */
  readonly pollMs: number;
  /** Presence entries expire after this; they are refreshed at a third of it. */
  readonly presenceTtlMs: number;
  /** How long a finished log stays readable. */
  readonly eventLogTtlMs: number;
  readonly maxHistoryMessages: number;
  /** Told when this listener starts (+1) and ends (-1). */
  readonly onListener?: (delta: 1 | -1) => void;
}

const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });

/**
 * Follows a generation that runs on another instance (or ran before a restart) through the store's
 * event log. Its presence keeps the owner's resume window open. If the owner died without a final
 * event, the listener writes the `interrupted` ending and stores the partial reply, exactly once.
 */
export function remoteListener(options: RemoteListenerOptions): Listener {
  const { store, record, logger } = options;
  const controller = new AbortController();
  const close = (): void => controller.abort();
  options.signal?.addEventListener('abort', close, { once: true });
  if (options.signal?.aborted) close();
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
      store.touchListener(record.id, listenerId, options.presenceTtlMs).catch(() => undefined);
    };
    touch();
    const presence = setInterval(touch, Math.max(50, Math.floor(options.presenceTtlMs / 3)));
    try {
      while (!controller.signal.aborted) {
        let batch = await store.readEvents(record.id, seq, options.pollMs, controller.signal);
        if (batch.length === 0 && !controller.signal.aborted && !(await store.isAlive(record.id))) {
          // The owner's liveness mark is cleared only after its final event is logged: one more read decides.
          batch = await store.readEvents(record.id, seq, 0);
          if (batch.length === 0) batch = [await endOrphan(options)];
        }
        for (const { seq: at, event } of batch) {
          seq = at;
          yield { id: formatEventId(record.id, at), seq: at, event };
          if (isTerminalEvent(event)) return;
        }
      }
    } finally {
      uncount();
      clearInterval(presence);
      options.signal?.removeEventListener('abort', close);
      store.dropListener(record.id, listenerId).catch(() => undefined);
      logger.debug({ generationId: record.id, seq }, 'remote listener left');
    }
  }

  const iterator = follow();
  const listener: Listener = {
    next: () => (controller.signal.aborted ? iterator.return(undefined) : iterator.next()),
    return: () => {
      close();
      return iterator.return(undefined).then(() => {
        uncount();
        return DONE;
      });
    },
    close: () => {
      close();
      // A listener closed before it was ever read has no running generator to count it down.
      void iterator.return(undefined).then(uncount);
    },
    // Remote events arrive in batches through next(); there is never one waiting locally.
    poll: () => undefined,
    [Symbol.asyncIterator]: () => listener,
  };
  return listener;
}

export interface OrphanContext {
  readonly store: Store;
  readonly record: GenerationRecord;
  readonly logger: Logger;
  readonly eventLogTtlMs: number;
  readonly maxHistoryMessages: number;
}

/**
 * Ends a generation whose instance died: logs an `interrupted` ending after its last event and,
 * if this call wrote it, stores the partial reply and frees the session. Returns the ending that
 * is in the log (ours, or the one another instance wrote first).
 */
export async function endOrphan(options: OrphanContext): Promise<{ seq: number; event: StreamEvent }> {
  const { store, record } = options;
  for (;;) {
    const all = await store.readEvents(record.id, 0, 0);
    const last = all.at(-1);
    if (last && isTerminalEvent(last.event)) return last;
    const partial = all.map(({ event }) => (event.type === 'delta' ? event.delta : '')).join('');
    const ending: StreamEvent = { type: 'error', code: 'interrupted', message: ERROR_INFO.interrupted.message, partial };
    const seq = (last?.seq ?? 0) + 1;
    if (await store.appendEvent(record.id, seq, ending)) {
      options.logger.warn({ generationId: record.id, seq }, 'generation lost its instance; stored the partial reply');
      if (record.stored) {
        await store.appendMessage(record.sessionKey, {
          role: 'assistant',
          content: partial,
          status: 'interrupted',
          createdAt: new Date().toISOString(),
        }, options.maxHistoryMessages);
      }
      await store.releaseSessionLock(record.sessionKey, record.id);
      await store.expireGeneration(record.id, options.eventLogTtlMs);
      return { seq, event: ending };
    }
    // Another instance wrote an event at that position first: read again.
  }
}
