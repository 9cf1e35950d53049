import type { Socket } from 'node:net';
import { TRPCError } from '@trpc/server';
import type { WebSocket } from 'ws';
import { ChatStreamInput } from '../../../shared/chat-request.ts';
import type { StreamEvent } from '../../../shared/stream-events.ts';
import { openStream } from '../open-stream.ts';
import type { TRPCContext } from './context.ts';
import { toTRPCError } from './errors.ts';

const OPEN = 1; // WebSocket.OPEN

/** Where a `chat.stream` subscription writes, and how it tells the client it started. */
export interface WsStreamTarget {
  readonly ws: WebSocket;
  /** The connection's TCP socket, corked around a batch so that it leaves in one write. */
  readonly socket: Socket;
  /** The subscription's request id and JSON-RPC marker, as the client sent them. */
  readonly id: number | string;
  readonly jsonrpc: '2.0' | undefined;
  readonly sendStarted: () => void;
}

/**
 * `chat.stream` over tRPC's WebSocket protocol, written by Sluice itself: the same checks, in the
 * same order, as the router's procedure (key, rate limit, input; then `started`, then the stream),
 * but each event is one pre-built frame instead of a trip through tRPC's iterator, envelope and
 * transformer machinery, and everything already in the event log goes out in one socket write.
 * The frames are byte for byte what tRPC's adapter sends: `result.data` is superjson's
 * `{"json": {id, data}}` of the tracked event (stream events are plain JSON).
 */
export async function runWsChatStream(target: WsStreamTarget, ctx: TRPCContext, rawInput: unknown, signal: AbortSignal): Promise<void> {
  if (!ctx.owner) throw new TRPCError({ code: 'UNAUTHORIZED', message: 'A valid API key is required' });
  const owner = ctx.owner;
  try {
    await ctx.checkRate(owner);
  } catch (error) {
    throw toTRPCError(error);
  }
  const parsed = ChatStreamInput.safeParse(rawInput);
  if (!parsed.success) throw new TRPCError({ code: 'BAD_REQUEST', cause: parsed.error });
  const input = parsed.data;
  if (signal.aborted) return;
  target.sendStarted();

  let attachment;
  try {
    attachment = await openStream(
      ctx.service,
      { owner, message: input.message, sessionId: input.sessionId, lastEventId: input.lastEventId, transport: ctx.transport },
      signal,
    );
  } catch (error) {
    throw toTRPCError(error);
  }
  const { listener } = attachment;
  const { ws, socket } = target;
  const { sink } = ctx;
  const prefix = `{"id":${JSON.stringify(target.id)},${target.jsonrpc ? '"jsonrpc":"2.0",' : ''}"result":{"type":"data","id":`;
  const frame = (eventId: string, event: StreamEvent): string => {
    const id = JSON.stringify(eventId);
    return `${prefix}${id},"data":{"json":{"id":${id},"data":${JSON.stringify(event)}}}}}`;
  };
  let sent = 0;
  ctx.metrics.streamOpened(ctx.transport);
  try {
    for (let next = await listener.next(); !next.done; next = await listener.next()) {
      if (ws.readyState !== OPEN) break;
      socket.cork();
      try {
        ws.send(frame(next.value.id, next.value.event));
        sent++;
        // A batch stops at the reader's room, so buffering stays within one frame of the high-water mark.
        for (let more = sink.hasRoom() ? listener.poll() : undefined; more; more = sink.hasRoom() ? listener.poll() : undefined) {
          ws.send(frame(more.id, more.event));
          sent++;
        }
      } finally {
        socket.uncork();
      }
      // A reader that cannot keep up is waited for, and cut off after the send timeout.
      if (!sink.hasRoom() && !(await sink.ready(signal))) break;
    }
  } finally {
    ctx.metrics.streamClosed(ctx.transport, sent);
    listener.close();
  }
}
