import type { Logger } from 'pino';
import type { ChatMessage } from '../../../../../shared/messages.ts';
import { SluiceError } from '../../../errors.ts';
import {
  checkKeepLast,
  checkMaxSessions,
  checkReadOptions,
  tooManySessions,
  type AppendOptions,
  type BeginOptions,
  type History,
  type HistoryMessage,
  type ReadOptions,
} from '../../history.ts';
import * as sql from './operations.ts';
import { draftKey, unavailable, WriteQueue, type QueuedWrite } from './write-queue.ts';
import { within } from '../../../../../shared/within.ts';

/** How long the health check waits for its write while writes fail. */
const PROBE_WAIT_MS = 3000;
/** Idle sessions deleted per transaction, so that a large sweep holds neither a lock nor the event loop for long. */
const EXPIRE_CHUNK = 500;

export interface SqlHistoryOptions {
  readonly logger: Logger;
  /** Epoch ms, for the sessions' last-touched times. Default: Date.now. */
  readonly clock?: () => number;
  /** Operations per transaction (see WriteQueueOptions.maxBatch). */
  readonly maxBatch: number;
  /** How long a write waits for those before it (see WriteQueueOptions.maxWaitMs): the database's own limit on one statement. */
  readonly maxWaitMs: number;
}

/**
 * What SQLite and PostgreSQL share: the same statements (operations.ts), one write queue per
 * instance, the same answers to closing and to corrupt rows. A database supplies how a batch runs
 * in a transaction, how a read runs, which errors are one write's, and how it closes.
 */
export abstract class SqlHistory implements History {
  protected readonly clock: () => number;
  protected readonly logger: Logger;
  readonly #queue: WriteQueue;
  #closing: Promise<void> | undefined;

  protected constructor(options: SqlHistoryOptions) {
    this.logger = options.logger;
    this.clock = options.clock ?? Date.now;
    this.#queue = new WriteQueue({
      run: (writes) => this.runBatch(writes),
      retryAlone: (error) => this.isOneWriteError(error),
      logger: options.logger,
      maxBatch: options.maxBatch,
      maxWaitMs: options.maxWaitMs,
    });
  }

  /** Runs the writes in one transaction (see BatchRunner). */
  protected abstract runBatch(writes: readonly QueuedWrite[]): Promise<unknown[]> | unknown[];
  /** Whether a failed batch failed for one write's sake (then each is tried alone). */
  protected abstract isOneWriteError(error: unknown): boolean;
  protected abstract readRows(step: sql.Step): Promise<sql.Row[]> | sql.Row[];
  /** Whether the database answers (the store is not closing). */
  protected abstract ping(): Promise<boolean> | boolean;
  /** Closes the connections, once the queue has written what it held. */
  protected abstract closeConnections(): Promise<void> | void;
  /** See BeginLimit.ownerLock: for a database that other processes write to at once. */
  protected readonly ownerLock: ((owner: string) => sql.Step) | undefined = undefined;

  async read(sessionKey: string, options?: ReadOptions): Promise<HistoryMessage[]> {
    const { limit, before } = checkReadOptions(options);
    if (this.#closing) throw new SluiceError('unavailable', 'The history store is closed');
    try {
      const rows = await this.readRows(sql.readStep(sessionKey, limit, before));
      return sql.toMessages(rows, (row) => this.logger.warn({ sessionKey, seq: row.seq }, 'skipped a corrupt history entry'));
    } catch (error) {
      throw unavailable(error);
    }
  }

  /** Replies whose drafts are still there (nothing wrote their final message), at most `limit`. */
  async drafts(limit = 1000): Promise<Array<{ sessionKey: string; replyId: string }>> {
    const rows = await this.readRows(sql.draftsStep(limit));
    return rows.map((row) => ({ sessionKey: String(row.session_key), replyId: String(row.reply_id) }));
  }

  async append(sessionKey: string, message: ChatMessage, options: AppendOptions): Promise<number> {
    const keepLast = checkKeepLast(options.keepLast);
    const { replyId } = options;
    const now = this.clock();
    return this.#queue.push(sessionKey, () => sql.append(sessionKey, message, keepLast, replyId, now), { barrier: replyId && draftKey(sessionKey, replyId) });
  }

  async begin(sessionKey: string, message: ChatMessage, options: BeginOptions): Promise<number> {
    const keepLast = checkKeepLast(options.keepLast);
    const limit = { maxSessions: checkMaxSessions(options.maxSessions), ownerLock: this.ownerLock };
    const { replyId } = options;
    const now = this.clock();
    // A barrier like a final append's: a checkpoint called after it cannot be merged into one queued before it.
    const seq = await this.#queue.push(sessionKey, () => sql.begin(sessionKey, message, keepLast, replyId, now, limit), {
      barrier: draftKey(sessionKey, replyId),
    });
    // Refused in the transaction without failing it: the writes batched with it go through.
    if (seq === undefined) throw tooManySessions(limit.maxSessions);
    return seq;
  }

  checkpoint(sessionKey: string, replyId: string, text: string): Promise<void> {
    const now = this.clock();
    return this.#queue.push(sessionKey, () => sql.checkpoint(sessionKey, replyId, text, now), { coalesce: draftKey(sessionKey, replyId) });
  }

  deleteSession(sessionKey: string): Promise<boolean> {
    return this.#queue.push(sessionKey, () => sql.deleteSession(sessionKey));
  }

  async expireIdle(cutoff: number): Promise<number> {
    let total = 0;
    for (;;) {
      const deleted = await this.#queue.push(undefined, () => sql.expireIdle(cutoff, EXPIRE_CHUNK));
      total += deleted;
      if (deleted < EXPIRE_CHUNK) return total;
    }
  }

  async healthy(): Promise<boolean> {
    if (this.#closing || !(await this.ping())) return false;
    // While writes fail (a lock held elsewhere, a full disk), a read says nothing: a write is tried,
    // which also finds out by itself when they go through again.
    if (!this.#queue.failing) return true;
    const probe = this.#queue
      .push(undefined, () => sql.probe())
      .then(
        () => true,
        () => false,
      );
    // A write that waits (on a lock, say) is as good as one that failed, for a health check.
    return within(probe, PROBE_WAIT_MS, () => false);
  }

  /**
   * How long closing waits for the writes under way before it cuts the connections they are on
   * (undefined: for as long as they take; a database in this process, whose writes do not hang).
   */
  protected closeGraceMs(): number | undefined {
    return undefined;
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      // The writes queued go first. A database that still answers has them finished (its statement
      // timeout bounds them); a batch one that no longer answers holds (a frozen server enforces
      // no timeout) is cut, with its connections, after a grace: it fails, and what waits on it (a
      // reply's last write, at shutdown) goes on.
      const drained = this.#queue.close().then(() => true);
      const grace = this.closeGraceMs();
      if (grace === undefined || (await within(drained, grace, () => false)) || (await within(Promise.resolve(this.ping()), grace, () => false))) await drained;
      await this.closeConnections();
      // Cut, the writes under way fail, and the queue's loop ends.
      await drained;
    })();
    return this.#closing;
  }
}
