import type { SessionHistory } from '../../shared/messages.ts';
import { ANONYMOUS_OWNER } from '../core/api-keys.ts';
import { SluiceError } from '../core/errors.ts';

/** What a message costs an answer besides its text: its other fields, as JSON. */
const MESSAGE_BYTES = 160;

/** About what an answer of history is as it waits for its reader: its messages' UTF-8 text and fields. */
export const historyBytes = (history: SessionHistory): number => history.messages.reduce((n, m) => n + Buffer.byteLength(m.content, 'utf8') + MESSAGE_BYTES, 0);

/** The share of the whole that one owner's answers may hold. */
const OWNER_SHARE = 4;

/** An answer this small is what a reader's buffer holds anyway (STREAM_HIGH_WATER_BYTES' default): never counted, never refused. */
const FREE_BYTES = 64 * 1024;

/**
 * What answers written whole (a page of history: up to a thousand long messages, megabytes; a
 * completion answered at once) hold while their readers take them, across the process
 * (MAX_HELD_ANSWER_BYTES). A reader that takes nothing holds its answer until the send timeout
 * cuts it, and every connection could hold one: past the bound a new answer is refused instead of
 * held. An owner's answers may hold a quarter of it (429: one key's stalled readers do not take
 * everyone's), all of them the whole (503, retried soon); without keys every caller is the one
 * anonymous owner, which has no share of its own. An answer is counted from when it is ready until
 * its reader has taken it (or is gone), and one is always answered while nothing is held, so the
 * bound is the capacity and one answer. A short answer (up to a reader's buffer) is neither
 * counted nor refused.
 */
export class HeldAnswers {
  readonly #capacity: number;
  readonly #ownerCapacity: number;
  #held = 0;
  readonly #byOwner = new Map<string, number>();

  constructor(capacityBytes: number) {
    if (!Number.isInteger(capacityBytes) || capacityBytes < 1) throw new RangeError(`held answers: capacity must be a positive integer, got ${capacityBytes}`);
    this.#capacity = capacityBytes;
    this.#ownerCapacity = Math.max(1, Math.floor(capacityBytes / OWNER_SHARE));
  }

  /** Bytes held now. */
  get held(): number {
    return this.#held;
  }

  /**
   * Produces an answer for `owner` and holds it (see `hold`) until `taken()` settles (called once
   * the answer is on its way out: it resolves when the reader has taken it or is gone).
   */
  async answer<T>(owner: string, produce: () => Promise<T>, size: (answer: T) => number, taken: () => Promise<unknown>): Promise<T> {
    const answer = await produce();
    this.hold(owner, size(answer), taken);
    return answer;
  }

  /** Counts `bytes` for `owner` until `taken()` settles; throws when the owner's share or the whole is already held. */
  hold(owner: string, bytes: number, taken: () => Promise<unknown>): void {
    if (bytes <= FREE_BYTES) return;
    const ownerHeld = this.#byOwner.get(owner) ?? 0;
    if (owner !== ANONYMOUS_OWNER && ownerHeld >= this.#ownerCapacity) {
      throw new SluiceError(
        'rate_limited',
        `This key's answers not yet taken by their readers hold ${ownerHeld} bytes, its share of MAX_HELD_ANSWER_BYTES (${this.#ownerCapacity} of ${this.#capacity}): read them (or close their connections), or ask for a shorter page (limit)`,
        { retryAfterSeconds: 1 },
      );
    }
    if (this.#held >= this.#capacity) {
      throw new SluiceError('unavailable', `Answers not yet taken by their readers fill MAX_HELD_ANSWER_BYTES (${this.#capacity} bytes); try again shortly`);
    }
    this.#held += bytes;
    this.#byOwner.set(owner, ownerHeld + bytes);
    const release = (): void => {
      this.#held -= bytes;
      const left = (this.#byOwner.get(owner) ?? 0) - bytes;
      if (left > 0) this.#byOwner.set(owner, left);
      else this.#byOwner.delete(owner);
    };
    taken().then(release, release);
  }
}
