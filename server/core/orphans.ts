import type { Logger } from 'pino';
import { isTerminalEvent, type StreamEvent } from '../../shared/stream-events.ts';
import { ERROR_MESSAGES } from './errors.ts';
import type { Leases } from './leases.ts';
import type { EventLog, GenerationRecord } from './store/event-log.ts';
import type { Signals } from './store/signals.ts';
import type { History, HistoryMessage } from './store/history.ts';
import type { ProviderMessage } from './providers/provider.ts';
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
  /** What the provider puts before every prompt (a system prompt), counted in an orphan's usage as its own instance would have. */
  readonly preamble?: readonly ProviderMessage[] | undefined;
  /**
   * Where its outcome is settled against cancels, as a running reply's is: one that answered true
   * while its death was not yet known has it end cancelled, and one after the settle answers false.
   */
  readonly signals: Pick<Signals, 'settle'>;
  /** How long a settled outcome stays marked (as for a reply that ended by itself). */
  readonly settledMarkTtlMs: number;
  /**
   * How long an orphan's ending stays marked: as long as its owner may still wake and settle the
   * reply (its record's lifetime), so that the owner learns the reply is not its own any more.
   */
  readonly orphanMarkTtlMs: number;
}

/** What became of a generation that looked orphaned (its liveness mark missing). */
export type OrphanOutcome =
  /** Its ending is in the log (the one this call wrote, or one written before). */
  | { readonly kind: 'ended'; readonly seq: number; readonly event: StreamEvent }
  /** Its mark came back: its instance lives (a store that lost the mark), and the reply runs on. */
  | { readonly kind: 'alive' }
  /** Its instance is gone, and so is part of its log (a store that lost it): nothing was written. */
  | { readonly kind: 'lost' };

const ALIVE: OrphanOutcome = { kind: 'alive' };
const LOST: OrphanOutcome = { kind: 'lost' };

/**
 * Ends a generation whose instance died: logs an `interrupted` ending (`cancelled` if a cancel got
 * to its outcome first) after its last event and,
 * if this call wrote it, stores the partial reply and frees the session. `confirmDead`, when given,
 * is asked before anything is written (see Leases.seenDead).
 * An ending is never written below `seen`, the last event the caller has shown: a log shorter than
 * that lost events, and an ending after what is left of it would be a reply its clients never saw.
 */
export async function endOrphan(o: OrphanContext, record: GenerationRecord, seen = 0, confirmDead?: () => Promise<boolean>): Promise<OrphanOutcome> {
  const { events } = o;
  const logged = await loggedEnding(events, record.id);
  if (logged) return logged;
  if (confirmDead && !(await confirmDead())) return ALIVE;
  // Settled as a running reply settles: a cancel that got there first (it answered true) decides.
  const settled = await o.signals.settle(record.id, o.settledMarkTtlMs, { endingTtlMs: o.orphanMarkTtlMs });
  const code = settled === 'cancelled' ? 'cancelled' : 'interrupted';
  for (;;) {
    const all = await events.read(record.id, 0, 0);
    const last = all.at(-1);
    if (last && isTerminalEvent(last.event)) return { kind: 'ended', seq: last.seq, event: last.event };
    if ((last?.seq ?? 0) < seen) return LOST;
    const partial = all.map(({ event }) => (event.type === 'delta' ? event.delta : '')).join('');
    const place = record.stored ? await placeOf(o, record) : undefined;
    const usage = place ? await estimateUsage([...(o.preamble ?? []), ...place.prompt], partial) : undefined;
    const ending: StreamEvent = { type: 'error', code, message: ERROR_MESSAGES[code], partial, ...(usage ? { usage } : {}) };
    const seq = (last?.seq ?? 0) + 1;
    if ((await events.append(record.id, seq, ending)) === 'added') {
      // A reply that died as it started (its message not stored yet) has no place in history to end.
      const stores = record.stored && (place === undefined || place.drafted);
      o.logger.warn(
        { generationId: record.id, seq },
        stores ? 'generation lost its instance; stored the partial reply' : 'generation lost its instance before its message was stored',
      );
      if (stores) {
        await o.history.append(
          record.sessionKey,
          { role: 'assistant', content: partial, status: 'interrupted', createdAt: isoTime(), ...(usage ? { usage } : {}) },
          { keepLast: o.maxHistoryMessages, replyId: record.id },
        );
      }
      await o.leases.releaseSession(record.sessionKey, record.id);
      await o.leases.forgetSighting(record.id);
      await events.expire(record.id, o.eventLogTtlMs);
      return { kind: 'ended', seq, event: ending };
    }
    // Another instance wrote at that position first (or ended the log): read again.
  }
}

/** The ending a generation's log holds, if it has one. */
async function loggedEnding(events: EventLog, generationId: string): Promise<OrphanOutcome | undefined> {
  const last = (await events.read(generationId, 0, 0)).at(-1);
  return last && isTerminalEvent(last.event) ? { kind: 'ended', seq: last.seq, event: last.event } : undefined;
}

/**
 * If a session's lock is held by a generation whose instance died (its mark missing, seen so for
 * half its TTL: see Leases.seenDead) or that has ended (its ending logged), ends it as
 * `interrupted` if it had not (storing its partial reply) and frees the session. True then.
 */
export async function endIfDead(o: OrphanContext, sessionKey: string, holder: string): Promise<boolean> {
  if (await o.leases.isAlive(holder)) return false;
  const orphan = await o.events.load(holder);
  // A reply whose ending is logged is over, whatever became of its mark.
  const over = orphan !== undefined && (await loggedEnding(o.events, holder)) !== undefined;
  if (!over && !(await o.leases.seenDead(holder))) return false;
  if (orphan && !over) await endOrphan(o, orphan);
  // The lock goes in any case: a reply whose ending is logged (by itself, or by another instance)
  // may still hold it, when its own release never reached the store.
  await o.leases.releaseSession(sessionKey, holder);
  await o.leases.forgetSighting(holder);
  return true;
}

/**
 * Where the dead instance's reply stands in its session: the messages before it (its prompt, for
 * the usage estimate its own instance would have made) and whether it took its place there (its
 * draft: every reply that began has one until its final message). Undefined when history cannot be
 * read now: the ending is then stored without usage rather than not at all.
 */
async function placeOf(o: OrphanContext, record: GenerationRecord): Promise<{ readonly prompt: HistoryMessage[]; readonly drafted: boolean } | undefined> {
  try {
    const messages = await o.history.read(record.sessionKey);
    const prompt = messages.filter((message) => message.draftOf !== record.id);
    return { prompt, drafted: prompt.length < messages.length };
  } catch (error) {
    o.logger.warn({ generationId: record.id, err: error }, 'could not read the history of a reply that lost its instance');
    return undefined;
  }
}
