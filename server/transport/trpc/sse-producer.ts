import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseConnectionParamsFromString } from '@trpc/server/http';
import { getErrorShape } from '@trpc/server/unstable-core-do-not-import';
import { TRPCError } from '@trpc/server';
import superjson from 'superjson';
import type { StreamEvent } from '../../../shared/stream-events.ts';
import type { Attachment } from '../../core/chat-service.ts';
import type { Sink } from '../backpressure.ts';
import type { StreamMetrics } from '../drain.ts';
import { eventJson } from '../event-json.ts';
import { bearerToken } from '../http/bearer.ts';
import { streamSse } from '../http/sse-stream.ts';
import type { ChatApi } from './context.ts';
import { credentialFromParams } from './connection-params.ts';
import { inputNotSuperjson, toTRPCError } from './errors.ts';
import type { AppRouter } from './router.ts';

export interface TrpcSseOptions {
  readonly router: AppRouter;
  readonly chat: ChatApi;
  readonly metrics: StreamMetrics;
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
  return `data: {"json":${eventJson(event)}}\nid: ${id}\n\n`;
}

/**
 * `GET /trpc/chat.stream`: tRPC subscriptions over SSE, written by Sluice itself. tRPC's own SSE
 * producer costs several times more CPU per event; this one speaks the same protocol (`connected`,
 * `data` + `id`, `ping`, `serialized-error`, `return`) on the same admission and drain loop as every
 * transport, so the stock httpSubscriptionLink cannot tell the difference.
 */
export async function handleTrpcSse(req: IncomingMessage, res: ServerResponse, query: URLSearchParams, o: TrpcSseOptions): Promise<void> {
  // tRPC answers a batch of subscriptions before any stream: a 400 with the batch's one error.
  if (query.get('batch') === '1') {
    const error = new TRPCError({ code: 'BAD_REQUEST', message: 'Cannot batch subscription calls' });
    o.onError({ error, path: 'chat.stream' });
    const shape = getErrorShape({ config: o.router._def._config, error, type: 'subscription', path: 'chat.stream', input: undefined, ctx: undefined });
    res.writeHead(400, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify([{ error: superjson.serialize(shape) }]));
    return;
  }
  // writeHead's headers replace those set before: keep the origin policy's `Vary: Origin`.
  const vary = res.getHeader('Vary');
  res.writeHead(200, vary === undefined ? HEADERS : { ...HEADERS, Vary: `${String(vary)}, ${HEADERS.Vary}` });
  // Written with what follows it (the first events, or the error), in one write.
  const connected = o.ssePingMs > 0 ? CONNECTED_WITH_RECONNECT(o.ssePingMs * 2 + 5000) : CONNECTED;

  let input: unknown;
  let attachment: Attachment;
  try {
    // The header when the client can send one; else `connectionParams`, which httpSubscriptionLink
    // puts in the URL (a browser's EventSource has no headers).
    const params = query.get('connectionParams');
    const credential = bearerToken(req.headers.authorization) ?? (params === null ? undefined : credentialFromParams(parseConnectionParamsFromString(params)));
    // The resume point goes into the input, as tRPC's adapter puts it: the header EventSource sends
    // on reconnect, or the query.
    const header = req.headers['last-event-id'];
    const lastEventId = (typeof header === 'string' && header) || query.get('lastEventId') || query.get('Last-Event-Id');
    attachment = await o.chat.chatStream({
      credential,
      input: undefined,
      decodeInput: () => {
        input = decodeInput(query.get('input'));
        if (lastEventId) input = input !== null && typeof input === 'object' && !Array.isArray(input) ? { ...input, lastEventId } : (input ?? { lastEventId });
        return input;
      },
      transport: 'trpc-http',
      // A client that leaves meanwhile is noticed by the stream, which then closes the listener.
      signal: undefined,
    });
  } catch (caught) {
    const error = toTRPCError(caught);
    o.onError({ error, path: 'chat.stream' });
    const shape = getErrorShape({ config: o.router._def._config, error, type: 'subscription', path: 'chat.stream', input, ctx: undefined });
    res.end(`${connected}event: serialized-error\ndata: ${JSON.stringify(superjson.serialize(shape))}\n\n`);
    return;
  }

  await streamSse({
    res,
    listener: attachment.listener,
    sink: o.sinkFor(res),
    opening: connected,
    frame: dataFrame,
    trailer: RETURN,
    ping: { everyMs: o.ssePingMs, frame: () => PING },
    metrics: o.metrics,
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
    throw inputNotSuperjson();
  }
}
