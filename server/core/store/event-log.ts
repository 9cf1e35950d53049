import type { StreamEvent } from '../../../shared/stream-events.ts';
import { SluiceError } from '../errors.ts';

/** What the event log keeps about a generation so that any instance can attach to it. */
export interface GenerationRecord {
  readonly id: string;
  readonly owner: string;
  readonly sessionId: string;
  readonly sessionKey: string;
  /** False for stateless replies (no session history to repair). */
  readonly stored: boolean;
}

export interface LoggedEvent {
  readonly seq: number;
  readonly event: StreamEvent;
}

/**
 * What appending event `seq` did: `added`; `duplicate` (the log already has that position: a retry
 * whose first try was stored); `gap` (an earlier position is missing: events are stored in order,
 * never with a hole); `ended` (the log already has a terminal event, at or before this position:
 * another instance ended the reply); `expired` (it reached the log after its deadline).
 */
export type AppendResult = 'added' | 'duplicate' | 'gap' | 'ended' | 'expired';

/**
 * Copies a running generation's events into the log, numbered from 1. An event with a `deadline`
 * (epoch ms, by the log's clock) is not added after it: a write its writer gave up on (it ended
 * the reply before that event) and that a stalled store runs late must not add to the reply.
 */
export type EventWriter = (seq: number, event: StreamEvent, deadline?: number) => Promise<AppendResult>;

/**
 * Where a generation's events are kept for listeners on other instances (and after a restart):
 * the EventLog port, with the presence of those listeners. Methods reject with
 * SluiceError('unavailable') when the backing service cannot be reached.
 */
export interface EventLog {
  /**
   * How long a running reply, and a listener following one, wait for this log through an outage
   * (a failover) before they end as `unavailable`; unset: the default of each (about 1.5 s).
   */
  readonly outageWaitMs?: number;
  /**
   * Opens a starting generation's log (its record kept for `ttlMs`), and returns the writer its
   * events are copied through. A log that no other process reads returns undefined: the generation
   * then serves every listener itself, and nothing is copied or recorded.
   */
  open(record: GenerationRecord, ttlMs: number): Promise<EventWriter | undefined>;
  /** The record of a generation opened in this log, unless it expired. */
  load(generationId: string): Promise<GenerationRecord | undefined>;
  /** Appends event `seq` (the writer's own call, for a log that must be ended from outside; `deadline` as for EventWriter). */
  append(generationId: string, seq: number, event: StreamEvent, deadline?: number): Promise<AppendResult>;
  /**
   * Events after `afterSeq`, in order. When there are none yet, waits up to `waitMs` for some
   * (returning an empty list on timeout or abort).
   */
  read(generationId: string, afterSeq: number, waitMs: number, signal?: AbortSignal): Promise<LoggedEvent[]>;
  /** Whether the log holds event `seq` (one entry read, however long the log). */
  holds(generationId: string, seq: number): Promise<boolean>;
  /** Keeps a finished generation's log (and record) for `ttlMs` more, then forgets it and its presence. */
  expire(generationId: string, ttlMs: number): Promise<void>;

  // Listeners on other instances, so that the resume window does not close while one follows.
  touchListener(generationId: string, listenerId: string, ttlMs: number): Promise<void>;
  dropListener(generationId: string, listenerId: string): Promise<void>;
  countListeners(generationId: string): Promise<number>;
}

/** The cause of a read that met an entry which is not an event (a log mangled by hand, say). */
export class CorruptLogError extends Error {
  override readonly name = 'CorruptLogError';
}

/** Whether a read failed on a corrupt entry: reading again will not help, unlike a store that is away. */
export function isCorruptLog(error: unknown): boolean {
  return error instanceof SluiceError && error.cause instanceof CorruptLogError;
}
