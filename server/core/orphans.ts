import type { Logger } from 'pino';
import { isTerminalEvent, type StreamEvent } from '../../shared/stream-events.ts';
import { ERROR_MESSAGES } from './errors.ts';
import type { Leases } from './leases.ts';
import type { EventLog, GenerationRecord } from './store/event-log.ts';
import type { History } from './store/history.ts';
import type { TokenUsage } from '../../shared/messages.ts';
import { estimateUsage } from './usage.ts';
import { isoTime } from './iso-time.ts';

/** What ending an orphan needs. */
export interface OrphanContext {
  readonly events: EventLog;
  readonly history: History;
  readonly leases: Leases;
  readonly logger: Logger;
  /** How long a finished log stays readable. */
  readonly eventLogTtlMs: number;
  readonly maxHistoryMessages: number;
}

/**
 * Ends a generation whose instance died: logs an `interrupted` ending after its last event and,
 * if this call wrote it, stores the partial reply and frees the session. Returns the ending that
 * is in the log (ours, or the one another instance wrote first).
 */
export async function endOrphan(o: OrphanContext, record: GenerationRecord): Promise<{ seq: number; event: StreamEvent }> {
  const { events } = o;
  for (;;) {
    const all = await events.read(record.id, 0, 0);
    const last = all.at(-1);
    if (last && isTerminalEvent(last.event)) return last;
    const partial = all.map(({ event }) => (event.type === 'delta' ? event.delta : '')).join('');
    const usage = record.stored ? await usageOf(o, record, partial) : undefined;
    const ending: StreamEvent = { type: 'error', code: 'interrupted', message: ERROR_MESSAGES.interrupted, partial, ...(usage ? { usage } : {}) };
    const seq = (last?.seq ?? 0) + 1;
    if ((await events.append(record.id, seq, ending)) === 'added') {
      o.logger.warn({ generationId: record.id, seq }, 'generation lost its instance; stored the partial reply');
      if (record.stored) {
        await o.history.append(
          record.sessionKey,
          { role: 'assistant', content: partial, status: 'interrupted', createdAt: isoTime(), ...(usage ? { usage } : {}) },
          { keepLast: o.maxHistoryMessages, replyId: record.id },
        );
      }
      await o.leases.releaseSession(record.sessionKey, record.id);
      await events.expire(record.id, o.eventLogTtlMs);
      return { seq, event: ending };
    }
    // Another instance wrote at that position first (or ended the log): read again.
  }
}

/**
 * If a session's lock is held by a generation whose instance died (no liveness mark), ends it as
 * `interrupted` (storing its partial reply) and frees the session. True when it was dead.
 */
export async function endIfDead(o: OrphanContext, sessionKey: string, holder: string): Promise<boolean> {
  if (await o.leases.isAlive(holder)) return false;
  const orphan = await o.events.load(holder);
  if (orphan) await endOrphan(o, orphan);
  // The lock goes in any case: a reply whose ending is logged (by itself, or by another instance)
  // may still hold it, when its own release never reached the store.
  await o.leases.releaseSession(sessionKey, holder);
  return true;
}

/**
 * What the dead instance's reply consumed, estimated as its instance would have: the session's
 * history before the reply (its prompt) and the partial text. Undefined when history cannot be read
 * now: the ending is stored without it rather than not at all.
 */
async function usageOf(o: OrphanContext, record: GenerationRecord, partial: string): Promise<TokenUsage | undefined> {
  try {
    const prompt = (await o.history.read(record.sessionKey)).filter((message) => message.draftOf !== record.id);
    return await estimateUsage(prompt, partial);
  } catch (error) {
    o.logger.warn({ generationId: record.id, err: error }, 'could not estimate the usage of a reply that lost its instance');
    return undefined;
  }
}
