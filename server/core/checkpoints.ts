import type { Logger } from 'pino';
import type { Generation } from './generation.ts';
import type { ChatMessage } from '../../shared/messages.ts';
import type { History } from './store/history.ts';
import { within } from '../../shared/within.ts';

export interface CheckpointsOptions {
  readonly history: History;
  /** How often the text of every running reply is saved (a crash loses at most about this much). */
  readonly intervalMs: number;
  readonly logger: Logger;
}

/** How long a final message the store refused is tried again. */
const FINAL_RETRY_MS = 600_000;
/** How long a stopping instance waits for its last try at the final messages still pending. */
const LAST_TRY_MS = 2000;

/** A reply's final message that the store did not take (it was away), tried again at each tick. */
interface PendingFinal {
  readonly sessionKey: string;
  readonly message: ChatMessage;
  readonly keepLast: number;
  readonly until: number;
  /** The write under way, resolving true once the message is stored. */
  writing: Promise<boolean> | undefined;
}

/**
 * Saves the text of this instance's running replies as drafts in history, on one timer for all of
 * them, so that a process that dies mid-reply leaves the reply there (`interrupted`, its text up to
 * the last checkpoint). A reply's final message replaces its draft; only replies that grew since
 * the last tick are written.
 */
export class Checkpoints {
  readonly #o: CheckpointsOptions;
  /** Running replies, with the number of deltas their last checkpoint held. */
  readonly #running = new Map<Generation, number>();
  /** By reply id: appending a reply's final message again changes nothing, so a retry is safe. */
  readonly #finals = new Map<string, PendingFinal>();
  #timer: NodeJS.Timeout | undefined;
  #failing = false;

  constructor(options: CheckpointsOptions) {
    if (!Number.isInteger(options.intervalMs) || options.intervalMs < 1) {
      throw new RangeError(`checkpoints: intervalMs must be a positive integer, got ${options.intervalMs}`);
    }
    this.#o = options;
  }

  track(generation: Generation): void {
    this.#running.set(generation, 0);
    this.#start();
  }

  /** No more checkpoints for this reply (its final message is about to be stored). */
  untrack(generation: Generation): void {
    this.#running.delete(generation);
    if (this.#running.size === 0 && this.#finals.size === 0) this.stop();
  }

  /**
   * A reply's final message that the store refused while it was away: written again at each tick
   * until it lands or FINAL_RETRY_MS has passed. Meanwhile the reply's draft keeps its place (and
   * reads back as `interrupted`); the final message replaces it, whatever came after it.
   */
  final(sessionKey: string, replyId: string, message: ChatMessage, keepLast: number): void {
    this.#finals.set(replyId, { sessionKey, message, keepLast, until: Date.now() + FINAL_RETRY_MS, writing: undefined });
    this.#start();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /**
   * Stops, after one last try at the final messages still pending (their clients were told the
   * reply would be stored once the store is back: it may be, by now); those that still do not
   * land are logged, each, as lost. Call it once the running replies have ended.
   */
  async close(): Promise<void> {
    this.stop();
    const pending = [...this.#finals];
    this.#finals.clear();
    await Promise.all(
      pending.map(async ([replyId, final]) => {
        // A write under way (the timer's) is waited for, and tried once more if it fails.
        const last = (final.writing ?? Promise.resolve(false)).then((stored) => stored || this.#write(replyId, final));
        const stored = await within(last, LAST_TRY_MS, () => false);
        if (stored) this.#o.logger.info({ replyId }, "stored a reply's final message before stopping");
        else this.#o.logger.error({ replyId }, "could not store a reply's final message before stopping; its draft stays (read as interrupted)");
      }),
    );
  }

  /** One try at a final message: true once stored. */
  #write(replyId: string, final: PendingFinal): Promise<boolean> {
    return this.#o.history.append(final.sessionKey, final.message, { keepLast: final.keepLast, replyId }).then(
      () => true,
      () => false,
    );
  }

  #start(): void {
    this.#timer ??= setInterval(() => this.#tick(), this.#o.intervalMs).unref();
  }

  #tick(): void {
    const now = Date.now();
    for (const [replyId, pending] of this.#finals) {
      if (pending.writing) continue;
      if (now > pending.until) {
        this.#finals.delete(replyId);
        this.#o.logger.error({ replyId }, "gave up storing a reply's final message; its draft stays (read as interrupted)");
        continue;
      }
      const writing = this.#write(replyId, pending);
      pending.writing = writing;
      void writing.then((stored) => {
        pending.writing = undefined;
        // Gone from the map: close() took it over.
        if (!stored || !this.#finals.delete(replyId)) return;
        this.#o.logger.info({ replyId }, "stored a reply's final message once the store was back");
      });
    }
    if (this.#running.size === 0 && this.#finals.size === 0) this.stop();
    for (const [generation, saved] of this.#running) {
      const { deltas, text } = generation.draft();
      if (deltas === saved) continue;
      this.#running.set(generation, deltas);
      this.#o.history.checkpoint(generation.sessionKey, generation.id, text).then(
        () => (this.#failing = false),
        (error: unknown) => {
          // One line per outage, not one per reply and tick.
          if (!this.#failing) this.#o.logger.warn({ err: error }, 'could not checkpoint running replies');
          this.#failing = true;
        },
      );
    }
  }
}
