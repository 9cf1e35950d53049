import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import type { Listener, TrackedEvent } from '../../core/generation.ts';
import { drain, type Outlet } from '../drain.ts';
import { eventJson } from '../event-json.ts';
import type { TRPCContext } from './context.ts';
import { TextFrames } from './ws-frames.ts';

const OPEN = 1; // WebSocket.OPEN

/** Where a `chat.stream` subscription writes, and how it tells the client it started. */
export interface WsStreamTarget {
  readonly ws: WebSocket;
  /** The connection's TCP socket: a batch of frames is written to it at once. */
  readonly socket: Socket;
  /** The subscription's request id and JSON-RPC marker, as the client sent them. */
  readonly id: number | string;
  readonly jsonrpc: '2.0' | undefined;
  readonly sendStarted: () => void;
}

/**
 * How a `chat.stream` subscription is stopped (`subscription.stop`, or the connection's close):
 * its listener is closed, which ends the drain loop and, when it was the reply's last listener,
 * starts the reply's resume window. It takes the place of an AbortController, which costs a held
 * stream about 1 KB (an EventTarget and its two maps) and its listeners on the way. No wait needs
 * one: a wait for the reader's room ends when the socket drains or closes, and a stop is only read
 * from a connection that has room.
 */
export class WsStreamStop {
  #stopped = false;
  #listener: Listener | undefined;

  get stopped(): boolean {
    return this.#stopped;
  }

  abort(): void {
    this.#stopped = true;
    this.#listener?.close();
  }

  /** Follows the stream's listener from now on; false (and the listener closed) when already stopped. */
  follow(listener: Listener): boolean {
    if (this.#stopped) {
      listener.close();
      return false;
    }
    this.#listener = listener;
    return true;
  }
}

/**
 * `chat.stream` over tRPC's WebSocket protocol, written by Sluice itself: admitted as every
 * transport admits it (then `started`, then the stream, as tRPC's adapter orders them), drained by
 * the shared loop, with each event one pre-built frame instead of a trip through tRPC's iterator,
 * envelope and transformer machinery. The frames are byte for byte what tRPC's adapter sends:
 * `result.data` is superjson's `{"json": {id, data}}` of the tracked event (stream events are
 * plain JSON).
 */
export async function runWsChatStream(target: WsStreamTarget, ctx: TRPCContext, rawInput: unknown, stop: WsStreamStop): Promise<void> {
  const { listener } = await ctx.chat.chatStream({ credential: ctx.credential, input: rawInput, transport: ctx.transport });
  if (!stop.follow(listener)) return;
  target.sendStarted();
  // Returned, not awaited: this function's frame is not kept for the stream's life.
  return drain({ listener, outlet: new WsOutlet(target, ctx), sink: ctx.sink, metrics: ctx.metrics, transport: ctx.transport });
}

class WsOutlet implements Outlet {
  readonly #ws: WebSocket;
  readonly #socket: Socket;
  readonly #ctx: TRPCContext;
  readonly #prefix: string;
  readonly #frames = new TextFrames();

  constructor(target: WsStreamTarget, ctx: TRPCContext) {
    this.#ws = target.ws;
    this.#socket = target.socket;
    this.#ctx = ctx;
    this.#prefix = `{"id":${JSON.stringify(target.id)},${target.jsonrpc ? '"jsonrpc":"2.0",' : ''}"result":{"type":"data","id":`;
  }

  isOpen(): boolean {
    return this.#ws.readyState === OPEN;
  }

  room(): number {
    return this.#ctx.sink.room() - this.#frames.bytes;
  }

  add({ id: eventId, event }: TrackedEvent): void {
    const id = JSON.stringify(eventId);
    this.#frames.add(`${this.#prefix}${id},"data":{"json":{"id":${id},"data":${eventJson(event)}}}}}`);
  }

  flush(): void {
    const frames = this.#frames.take();
    // Nothing may follow a close frame: checked where the bytes go out, as ws.send checks.
    if (this.#ws.readyState === OPEN) this.#socket.write(frames);
  }
}
