import type { ErrorCode } from '../../shared/errors.ts';
import type { Outcome } from './generation.ts';

/** What the core reports about generations, for metrics. Implementations must be cheap: some calls are per token. */
export interface GenerationObserver {
  started(transport: string): void;
  firstToken(ms: number): void;
  tokenGap(ms: number): void;
  ended(outcome: Outcome, transport: string, tokens: number): void;
  /** A generation failed with this code (the provider's, or the store's while saving). */
  failed(code: ErrorCode): void;
  resumed(transport: string): void;
}

export const NO_OBSERVER: GenerationObserver = {
  started: () => undefined,
  firstToken: () => undefined,
  tokenGap: () => undefined,
  ended: () => undefined,
  failed: () => undefined,
  resumed: () => undefined,
};
