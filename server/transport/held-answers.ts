import type { SessionHistory } from '../../shared/messages.ts';
import { SluiceError } from '../core/errors.ts';

/** What an answer of history costs while it waits for its reader, in characters of its messages. */
export const historyChars = (history: SessionHistory): number => history.messages.reduce((n, m) => n + m.content.length, 0);

/** The share of the whole that one owner's answers may hold. */
const OWNER_SHARE = 4;

/** An answer this small is what a reader's buffer holds anyway (STREAM_HIGH_WATER_BYTES' default): never counted, never refused. */
const FREE_CHARS = 64 * 1024;

/**
 * What answers written whole (a page of history: up to a thousand long messages, megabytes) hold
 * while their readers take them, across the process (MAX_HELD_ANSWER_CHARS). A reader that takes
 * nothing holds its answer until the send timeout cuts it, and every connection could hold one:
 * past the bound a new answer is refused instead of held. An owner's answers may hold a quarter of
 * it (429: one key's stalled readers do not take everyone's), all of them the whole (503, retried
 * soon). An answer is counted from when it is read until its reader has taken it (or is gone), and
 * one is always answered while nothing is held, so the bound is the capacity and one answer. A
 * short answer (up to a reader's buffer) is neither counted nor refused.
 */
export class HeldAnswers {
  readonly #capacity: number;
  readonly #ownerCapacity: number;
  #held = 0;
  readonly #byOwner = new Map<string, number>();

  constructor(capacityChars: number) {
    if (!Number.isInteger(capacityChars) || capacityChars < 1) throw new RangeError(`held answers: capacity must be a positive integer, got ${capacityChars}`);
    this.#capacity = capacityChars;
    this.#ownerCapacity = Math.max(1, Math.floor(capacityChars / OWNER_SHARE));
  }

  /** Characters held now (for tests and metrics). */
  get held(): number {
    return this.#held;
  }

  /**
   * Produces an answer for `owner` and counts its `size` until `taken()` settles (called once the
   * answer is on its way out: it resolves when the reader has taken it or is gone). Throws,
   * dropping the answer, when the owner's share or the whole is already held.
   */
  async answer<T>(owner: string, produce: () => Promise<T>, size: (answer: T) => number, taken: () => Promise<unknown>): Promise<T> {
    const answer = await produce();
    const chars = size(answer);
    if (chars <= FREE_CHARS) return answer;
    const ownerHeld = this.#byOwner.get(owner) ?? 0;
    if (ownerHeld >= this.#ownerCapacity) {
      throw new SluiceError(
        'rate_limited',
        `This key's answers not yet taken by their readers hold ${ownerHeld} characters, its share of MAX_HELD_ANSWER_CHARS (${this.#ownerCapacity} of ${this.#capacity}): read them (or close their connections), or ask for a shorter page (limit)`,
        { retryAfterSeconds: 1 },
      );
    }
    if (this.#held >= this.#capacity) {
      throw new SluiceError(
        'unavailable',
        `Answers not yet taken by their readers fill MAX_HELD_ANSWER_CHARS (${this.#capacity} characters); try again shortly`,
      );
    }
    this.#held += chars;
    this.#byOwner.set(owner, ownerHeld + chars);
    const release = (): void => {
      this.#held -= chars;
      const left = (this.#byOwner.get(owner) ?? 0) - chars;
      if (left > 0) this.#byOwner.set(owner, left);
      else this.#byOwner.delete(owner);
    };
    taken().then(release, release);
    return answer;
  }
}
