import type { SessionHistory } from '../../../shared/messages.ts';
import { SluiceError } from '../../core/errors.ts';

/** What a history costs a request's budget: its messages' characters. */
export const historyChars = (history: SessionHistory): number => history.messages.reduce((n, m) => n + m.content.length, 0);

/**
 * What one HTTP request to tRPC (a batch of calls) may be answered with, in characters of history.
 * tRPC answers a batch's calls together, and builds the answer whole: sixteen histories of 1,000
 * long messages are half a gigabyte and seconds of blocked event loop, from one small GET. Here
 * the history calls of a request are read one after another, each only if the budget is not
 * spent, so a request holds at most the budget and one history; the first is always answered.
 * (Over WebSocket each call is answered before the next starts, paced by the reader.)
 */
export class AnswerBudget {
  #left: number;
  #turn: Promise<unknown> = Promise.resolve();

  constructor(readonly chars: number) {
    this.#left = chars;
  }

  /** Reads, in its turn, unless the budget is spent (413); `size` is what the answer costs it. */
  spend<T>(read: () => Promise<T>, size: (answer: T) => number): Promise<T> {
    const turn = this.#turn.then(async () => {
      if (this.#left <= 0) {
        throw new SluiceError(
          'payload_too_large',
          `history: this request's answers reached MAX_BATCH_ANSWER_CHARS (${this.chars}); ask for the rest in another request`,
        );
      }
      const answer = await read();
      this.#left -= size(answer);
      return answer;
    });
    this.#turn = turn.catch(() => undefined);
    return turn;
  }
}
