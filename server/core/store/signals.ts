/**
 * Signals between instances: the Signals port. A cancel is a message to the instance that runs the
 * reply, and a mark in the shared state, so that it holds even when the message is lost (an
 * instance whose subscription was re-established catches up through `cancelled`): a reply whose
 * outcome is not settled yet when the cancel arrives ends as cancelled, and one whose outcome is
 * settled is not cancelled. The two are decided atomically, so a cancel's answer is the truth.
 */
/** How settling a generation's outcome went (see Signals.settle). */
export type Settlement = 'settled' | 'cancelled' | 'ended';

export interface Signals {
  /**
   * Asks the generation to stop; true when its outcome was not settled yet (it will end as
   * cancelled), false when it was, or a cancel was already asked. The mark lasts `ttlMs`.
   */
  requestCancel(generationId: string, ttlMs: number): Promise<boolean>;
  /**
   * The generation's outcome is settled now, by the instance that runs it, or (`orphan`) by one that
   * found that instance dead and ends the reply in its place: `cancelled` when a cancel came first
   * (it ends as cancelled); for its owner, `ended` when an orphan's ending came first (the reply is
   * not its own any more); else `settled`. The mark of a settled or cancelled outcome lasts `ttlMs`
   * from now (a cancel's, made to outlast the reply, no longer); an orphan's ending is marked for
   * `orphan.endingTtlMs`, as long as its owner may still wake and settle.
   */
  settle(generationId: string, ttlMs: number, orphan?: { readonly endingTtlMs: number }): Promise<Settlement>;
  /** Which of these generations a cancel was asked for (to catch up on messages that were missed). */
  cancelled(generationIds: readonly string[]): Promise<string[]>;
  /** Calls `handler` for every cancel asked on any instance; returns the unsubscribe function. */
  onCancel(handler: (generationId: string) => void): () => void;
  /** Calls `handler` whenever messages may have been missed (the subscription was re-established). */
  onResubscribed(handler: () => void): () => void;
}
