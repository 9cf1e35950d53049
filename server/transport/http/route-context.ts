import type { HeldAnswers } from '../held-answers.ts';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { ChatService } from '../../core/chat-service.ts';
import type { Admission } from '../admission.ts';
import type { Sink } from '../backpressure.ts';
import type { Metrics } from '../../observability/metrics.ts';

/** What a route handler needs besides the request. */
export interface RouteDeps {
  readonly service: ChatService;
  readonly admission: Admission;
  readonly logger: Logger;
  readonly maxBodyBytes: number;
  readonly ssePingMs: number;
  /** The model id the OpenAI-compatible routes serve. */
  readonly modelId: string;

  /** The tenant a request belongs to (`anonymous` when keys are off); set once the request is authenticated. */
  readonly ownerOf: (req: IncomingMessage) => string;
  /** Flow control towards the client of a streaming response. */
  readonly sinkFor: (res: ServerResponse) => Sink;
  readonly metrics: Metrics;
  /** False while the store is unreachable or the server shuts down (`GET /ready`). */
  readonly isReady: () => Promise<boolean>;
  /** tRPC over HTTP: Sluice's SSE producer for `chat.stream`, and tRPC's own handler for the rest. */
  /** What whole answers (pages of history) hold for their readers, across the process. */
  readonly heldAnswers: HeldAnswers;
  readonly trpc: {
    readonly sse: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
    readonly http: (req: IncomingMessage, res: ServerResponse) => void;
    readonly refuse: (req: IncomingMessage, res: ServerResponse, error: unknown) => void;
  };
}

export type RouteHandler = (req: IncomingMessage, res: ServerResponse, deps: RouteDeps, params: readonly string[]) => Promise<void>;
