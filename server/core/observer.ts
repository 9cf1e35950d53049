import type { ErrorCode } from '../../shared/errors.ts';
import type { TokenUsage } from '../../shared/messages.ts';
import type { Outcome } from './generation.ts';

/** What the core reports about generations, for metrics: a few calls per generation, none per delta. */
export interface GenerationObserver {
  started(transport: string): void;
  firstDelta(ms: number): void;
  /** A finished generation's time between consecutive deltas, on average and at most (two deltas or more). */
  deltaGaps(meanMs: number, maxMs: number): void;
  /** A generation ended; `usage` is what it consumed (the provider's counts, or Sluice's estimate). */
  ended(outcome: Outcome, transport: string, deltas: number, usage?: TokenUsage): void;
  /** A generation failed with this code (the provider's, or the store's while saving). */
  failed(code: ErrorCode): void;
  resumed(transport: string): void;
}

export const NO_OBSERVER: GenerationObserver = {
  started: () => undefined,
  firstDelta: () => undefined,
  deltaGaps: () => undefined,
  ended: () => undefined,
  failed: () => undefined,
  resumed: () => undefined,
};
