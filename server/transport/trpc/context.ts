import type { ChatService } from '../../core/chat-service.ts';
import type { Metrics } from '../../observability/metrics.ts';
import type { Sink } from '../backpressure.ts';

/** What every procedure sees. */
export interface TRPCContext {
  readonly service: ChatService;
  /** The tenant (an API key's id, or `anonymous` when keys are off); undefined for a missing or bad key. */
  readonly owner: string | undefined;
  readonly transport: 'trpc-ws' | 'trpc-http';
  /** Counts a request against the owner's rate limit (throws when over it). */
  readonly checkRate: (owner: string) => Promise<void>;
  /** Flow control towards this client. */
  readonly sink: Sink;
  readonly metrics: Metrics;
}
