import type { IncomingMessage, ServerResponse } from 'node:http';
import { getErrorShape } from '@trpc/server/unstable-core-do-not-import';
import superjson from 'superjson';
import { ChatStreamInput } from '../../../shared/chat-request.ts';
import type { StreamEvent } from '../../../shared/stream-events.ts';
import { bearerToken, type ApiKeys } from '../../core/api-keys.ts';
import type { ChatService } from '../../core/chat-service.ts';
import { SluiceError } from '../../core/errors.ts';
import type { RateLimiter } from '../../core/rate-limiter.ts';
import type { Metrics } from '../../observability/metrics.ts';
import type { Sink } from '../backpressure.ts';
import { openStream } from '../open-stream.ts';
import { toTRPCError } from '../trpc/errors.ts';
import type { AppRouter } from '../trpc/router.ts';
import { parseWith } from './json-io.ts';
import { pumpSse } from './sse-pump.ts';

export interface TrpcSseDeps {
  readonly router: AppRouter;
  readonly service: ChatService;
  readonly keys: ApiKeys;
  readonly rateLimiter: RateLimiter;
  readonly metrics: Metrics;
  readonly ssePingMs: number;
  readonly sinkFor: (res: ServerResponse) => Sink;
  readonly onError: (opts: { error: { code: string; cause?: unknown }; path?: string }) => void;
}

// tRPC's SSE wire protocol (what httpSubscriptionLink reads), as its own producer writes it.
const HEADERS = {
  'Content-Type': 'text/event-stream',
  'Cache-Control': 'no-cache, no-transform',
  Connection: 'keep-alive',
  'X-Accel-Buffering': 'no',
  Vary: 'trpc-accept, accept',
};
const PING = 'event: ping\ndata: \n\n';
const RETURN = 'event: return\ndata: \n\n';
const CONNECTED = 'event: connected\ndata: {}\n\n';
const CONNECTED_WITH_RECONNECT = (ms: number): string => `event: connected\ndata: {"reconnectAfterInactivityMs":${ms}}\n\n`;

// superjson of a plain object (strings, numbers, booleans) is `{"json": <the object>}`, so the
// frame is written directly instead of walking each event through superjson.
function dataFrame(event: StreamEvent, id: string): string {
  return `data: {"json":${JSON.stringify(event)}}\nid: ${id}\n\n`;
}

/**
 * `GET /trpc/chat.stream`: tRPC subscriptions over SSE, written by Sluice itself. tRPC's own SSE
 * producer costs several times more CPU per event; this one speaks the same protocol (`connected`,
 * `data` + `id`, `ping`, `serialized-error`, `return`) on the same chat service, so the stock
 * httpSubscriptionLink cannot tell the difference.
 */
export async function handleTrpcSse(req: IncomingMessage, res: ServerResponse, query: URLSearchParams, deps: TrpcSseDeps): Promise<void> {
  res.writeHead(200, HEADERS);
  // Written with what follows it (the first events, or the error), in one write.
  const connected = deps.ssePingMs > 0 ? CONNECTED_WITH_RECONNECT(deps.ssePingMs * 2 + 5000) : CONNECTED;

  let input: unknown;
  let attachment;
  try {
    input = decodeInput(query.get('input'));
    const parsed = parseWith(ChatStreamInput, input);
    const owner = deps.keys.identify(bearerToken(req.headers.authorization));
    if (!owner) throw new SluiceError('unauthorized');
    await deps.rateLimiter.check(owner);
    const header = req.headers['last-event-id'];
    const lastEventId = (typeof header === 'string' && header) || query.get('lastEventId') || parsed.lastEventId;
    attachment = await openStream(
      deps.service,
      { owner, message: parsed.message, sessionId: parsed.sessionId, lastEventId, transport: 'trpc-http' },
      // A client that leaves meanwhile is noticed by the pump, which then closes the listener.
      undefined,
    );
  } catch (caught) {
    const error = toTRPCError(caught);
    deps.onError({ error, path: 'chat.stream' });
    const shape = getErrorShape({ config: deps.router._def._config, error, type: 'subscription', path: 'chat.stream', input, ctx: undefined });
    res.end(`${connected}event: serialized-error\ndata: ${JSON.stringify(superjson.serialize(shape))}\n\n`);
    return;
  }

  await pumpSse({
    res,
    listener: attachment.listener,
    sink: deps.sinkFor(res),
    opening: connected,
    frame: dataFrame,
    trailer: RETURN,
    ping: { everyMs: deps.ssePingMs, frame: () => PING },
    metrics: deps.metrics,
    transport: 'trpc-http',
  });
}

/** The `input` query parameter: JSON of superjson's `{ json, meta }`. */
function decodeInput(raw: string | null): unknown {
  if (raw === null) return undefined;
  try {
    const value = JSON.parse(raw) as Parameters<typeof superjson.deserialize>[0];
    // Without type annotations superjson gives back `json` untouched; skip its walk.
    return value !== null && typeof value === 'object' && value.meta === undefined ? value.json : superjson.deserialize(value);
  } catch {
    throw new SluiceError('invalid_request', 'input: must be superjson-encoded JSON');
  }
}
