import type { Logger } from 'pino';
import type { CancelRouting } from './cancel-routing.ts';
import { SluiceError, toSluiceError } from './errors.ts';
import type { Checkpoints } from './checkpoints.ts';
import { Generation, type Listener } from './generation.ts';
import type { Held } from './leases.ts';
import type { LocalGenerations } from './local-generations.ts';
import type { GenerationObserver } from './observer.ts';
import type { Provider, ProviderMessage } from './providers/provider.ts';
import type { EventLog, EventWriter, GenerationRecord } from './store/event-log.ts';
import type { History } from './store/history.ts';
import type { Signals } from './store/signals.ts';

/** What a running reply holds, released as it ends. */
export interface Holds {
  readonly slot: Held;
  /** The session's lock (none for a stateless reply). */
  readonly lock?: Held;
  /** The liveness mark, let go only once the last event is where other instances read it. */
  readonly alive?: Held;
}

/** How a reply is to run. */
export interface RunRequest {
  /** The transport's name, for logs and metrics. */
  readonly transport: string;
  /** False: a client that leaves stops the reply at once (no resume window). Default true. */
  readonly resumable?: boolean | undefined;
  /** The first event is `start`, naming the reply. */
  readonly announce?: boolean | undefined;
  /** The most tokens the caller wants in the reply (see ProviderRequest.maxTokens). */
  readonly maxTokens?: number | undefined;
}

export interface ReplyRunnerOptions {
  readonly history: History;
  readonly events: EventLog;
  readonly signals: Signals;
  readonly provider: Provider;
  readonly logger: Logger;
  readonly observer: GenerationObserver;
  readonly local: LocalGenerations;
  readonly checkpoints: Checkpoints;
  readonly cancels: CancelRouting;
  readonly resumeGraceMs: number;
  readonly eventLogTtlMs: number;
  /**
   * How long the mark of a settled outcome lasts. A cancel reaches it only while the reply still
   * holds its session (until its final write and the lock's release, moments after settling), so
   * the resume window is ample; kept as long as a cancel's own mark (a day), the store held one per
   * reply of the last day.
   */
  readonly settledMarkTtlMs: number;
  readonly keepMessages: number;
  /** The longest reply kept, in characters (see GenerationOptions.maxReplyChars). */
  readonly maxReplyChars?: number;
  /** The longest a reply may run, in milliseconds (see GenerationOptions.maxReplyMs). */
  readonly maxReplyMs?: number;
  /** Told when a listener joins (+1) or leaves (-1). */
  readonly onListener: (delta: 1 | -1) => void;
}

/**
 * Runs a reply whose session is taken (or that has none) from its provider to its end: its events
 * to the shared log, its checkpoints, its final message, the release of what it held (the session
 * first, so that a client reacting to `done` never finds its own session busy), its metrics and
 * its log line.
 */
export class ReplyRunner {
  readonly #o: ReplyRunnerOptions;

  constructor(options: ReplyRunnerOptions) {
    this.#o = options;
  }

  /** Starts the reply; its first listener is the caller's. */
  launch(
    record: GenerationRecord,
    messages: readonly ProviderMessage[],
    writer: EventWriter | undefined,
    holds: Holds,
    request: RunRequest,
    signal: AbortSignal | undefined,
  ): Listener {
    const o = this.#o;
    let copyFailed = false;
    const generation = new Generation({
      id: record.id,
      owner: record.owner,
      sessionId: record.sessionId,
      sessionKey: record.sessionKey,
      resumeGraceMs: (request.resumable ?? true) ? o.resumeGraceMs : 0,
      storeWaitMs: o.events.outageWaitMs,
      onRefill: (events) =>
        o.logger.warn(
          { generationId: record.id, events },
          'the shared log lacked events before one it took (Redis lost them, in a failover or a restart without persistence, or their writes were still being retried); stored them again',
        ),
      onEvent: writer
        ? (seq, event, deadline) =>
            writer(seq, event, deadline).catch((error: unknown) => {
              // Tried again by the generation: one line per reply, not one per try.
              if (!copyFailed) o.logger.warn({ generationId: record.id, err: error }, 'could not log a stream event; trying again');
              copyFailed = true;
              throw error;
            })
        : undefined,
      keepAlive: record.stored ? async () => (await o.events.countListeners(record.id)) > 0 : undefined,
      // Replies of a session can be cancelled from anywhere: their outcome is settled in the shared
      // state. Every reply settles (one without a session too): that is what ends a cancel's mark.
      settle: () => o.signals.settle(record.id, o.settledMarkTtlMs),
      maxTokens: request.maxTokens,
      ...(o.maxReplyChars === undefined ? {} : { maxReplyChars: o.maxReplyChars }),
      ...(o.maxReplyMs === undefined ? {} : { maxReplyMs: o.maxReplyMs }),
      onListener: o.onListener,
      onFirstDelta: (ms) => o.observer.firstDelta(ms),
    });
    // Attach before the provider runs so that a client that is already gone stops it at once.
    const listener = generation.listen(0, signal, request.announce ?? false);
    o.observer.started(request.transport);
    if (record.stored) o.checkpoints.track(generation);
    if (o.cancels.takeEarly(record.id)) generation.stop('cancelled');
    o.local.add(generation, this.#run(generation, record, messages, holds, writer !== undefined, request.transport, request.resumable ?? true));
    return listener;
  }

  async #run(
    generation: Generation,
    record: GenerationRecord,
    messages: readonly ProviderMessage[],
    holds: Holds,
    logged: boolean,
    transport: string,
    resumable: boolean,
  ): Promise<void> {
    const o = this.#o;
    const { logger } = o;
    try {
      // The session is free again before the terminal event goes out, so a client that reacts to
      // `done` with its next message never finds its own session busy.
      const summary = await generation.run(o.provider, messages, async (reply) => {
        o.checkpoints.untrack(generation);
        try {
          if (record.stored) {
            await o.history.append(record.sessionKey, reply, { keepLast: o.keepMessages, replyId: record.id }).catch((error: unknown) => {
              if (toSluiceError(error).code !== 'unavailable') throw error;
              // The store is away: the message is written again until it lands (see Checkpoints.final),
              // which the client is told, lest it send its message again as a second turn.
              o.checkpoints.final(record.sessionKey, record.id, reply, o.keepMessages);
              throw new SluiceError('unavailable', 'The reply could not be saved yet: it will be stored once the history store is back', { cause: error });
            });
          }
        } finally {
          await this.#leaveSession(generation, holds);
        }
      });
      o.observer.ended(summary.outcome, transport, summary.deltas, summary.reply.usage);
      if (summary.deltaGapMs) o.observer.deltaGaps(summary.deltaGapMs.mean, summary.deltaGapMs.max);
      if (summary.error) o.observer.failed(summary.error.code);
      const line = {
        generationId: generation.id,
        sessionId: generation.sessionId,
        transport,
        outcome: summary.outcome,
        deltas: summary.deltas,
        durationMs: Math.round(summary.durationMs),
        firstDeltaMs: summary.firstDeltaMs === undefined ? undefined : Math.round(summary.firstDeltaMs),
      };
      if (summary.error?.code === 'internal') logger.error({ ...line, err: summary.error.cause }, 'generation failed unexpectedly');
      else if (summary.error) logger.warn({ ...line, code: summary.error.code, err: summary.error.cause }, 'generation failed');
      else logger.info(line, 'generation finished');
    } catch (error) {
      // run() catches everything it can; this guards against a bug taking the process down.
      logger.error({ generationId: generation.id, err: error }, 'generation crashed');
    } finally {
      o.checkpoints.untrack(generation);
      await this.#leaveSession(generation, holds);
      o.local.finished(generation, resumable);
      // run() has waited for the last copy: the final event is in the log before the mark goes
      // (see remote-listener), and the log then lives for the resume window only.
      await holds.alive?.release();
      if (logged) {
        await o.events.expire(record.id, o.eventLogTtlMs).catch((error: unknown) => {
          logger.warn({ generationId: record.id, err: error }, 'could not expire generation log');
        });
      }
    }
  }

  async #leaveSession(generation: Generation, holds: Holds): Promise<void> {
    if (!this.#o.local.leaveSession(generation)) return;
    await Promise.all([holds.slot.release(), holds.lock?.release()]);
  }
}
