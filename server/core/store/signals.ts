/** Signals between instances: the Signals port. */
export interface Signals {
  /** Asks whichever instance runs the generation to stop it. */
  publishCancel(generationId: string): Promise<void>;
  /** Calls `handler` for every cancel published by any instance; returns the unsubscribe function. */
  onCancel(handler: (generationId: string) => void): () => void;
}
