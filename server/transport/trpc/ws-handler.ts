import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { callTRPCProcedure, getErrorShape, transformTRPCResponse, TRPCError } from '@trpc/server';
import { parseConnectionParamsFromUnknown, type TRPCRequestInfo } from '@trpc/server/http';
import { parseTRPCMessage, type TRPCClientOutgoingMessage, type TRPCResponseMessage } from '@trpc/server/rpc';
import { isAsyncIterable, isTrackedEnvelope } from '@trpc/server/unstable-core-do-not-import';
import type { RawData, WebSocket } from 'ws';
import type { ConnectionSink } from '../backpressure.ts';
import type { TRPCContext } from './context.ts';
import type { AppRouter } from './router.ts';
import { batchTooLarge, toTRPCError } from './errors.ts';
import { runWsChatStream, WsStreamStop } from './ws-chat-stream.ts';
import { WsKeepAlive, type KeptAlive } from './ws-keepalive.ts';

const OPEN = 1; // WebSocket.OPEN

type ProcedureType = 'query' | 'mutation' | 'subscription';

export interface TrpcWsErrorInfo {
  readonly error: TRPCError;
  readonly path: string | undefined;
}

export interface TrpcWsHandlerOptions {
  readonly router: AppRouter;
  /**
   * Once per connection, with the `connectionParams` the client sent (or null) and the connection's
   * sink. May throw to refuse it.
   */
  readonly createContext: (opts: { ws: WebSocket; connectionParams: TRPCRequestInfo['connectionParams']; sink: ConnectionSink }) => Promise<TRPCContext>;
  /** Flow control towards one connection's client (`socket` is its TCP socket): every reply waits for its room. */
  readonly sinkFor: (ws: WebSocket, socket: Socket) => ConnectionSink;
  /** Calls one message may carry (tRPC's `maxBatchSize`); a bigger batch is refused whole. */
  readonly maxBatch: number;
  /** Subscriptions one connection may hold at once; the one beyond is refused. */
  readonly maxSubscriptions: number;
  /** Half-open peers: a client quiet for `pingMs` is sent `PING`, and cut off if nothing comes back in `pongWaitMs`. */
  readonly keepAlive: { readonly pingMs: number; readonly pongWaitMs: number };
  readonly onError: (info: TrpcWsErrorInfo) => void;
}

export interface TrpcWsHandler {
  /** Serves tRPC on one accepted WebSocket; everything it holds goes when the socket closes. */
  handleConnection(ws: WebSocket, req: IncomingMessage): void;
  /** tRPC's reconnect notification, to one client (before a shutdown, say). */
  notifyReconnect(ws: WebSocket): void;
  /**
   * Calls `then` once the connection carries no running subscription (at once when it carries none);
   * never if it closes first. A connection whose credential ended is let go then, not before: a
   * reply streaming on it goes on to its end (see ws-sign-ins.ts).
   */
  afterStreams(ws: WebSocket, then: () => void): void;
  /** Refuses a connection as tRPC refuses one whose context fails: the error (id null), then the close. */
  refuse(ws: WebSocket, error: TRPCError, closeCode: number): void;
}

type ContextResult = { ok: true; ctx: TRPCContext } | { ok: false; error: TRPCError };

const RECONNECT = JSON.stringify({ id: null, method: 'reconnect' });

/**
 * How long a refused client has to answer the close frame before its socket is cut. `ws` waits 30 s
 * for the answer, and a client that never gives it would hold its place (and count against the
 * connection limits) six times longer than the auth window it was refused for.
 */
const REFUSED_CLOSE_WAIT_MS = 1_000;

function closeRefused(ws: WebSocket, code?: number, reason?: string): void {
  ws.close(code, reason);
  const cut = setTimeout(() => ws.terminate(), REFUSED_CLOSE_WAIT_MS);
  ws.once('close', () => clearTimeout(cut));
}

/**
 * tRPC's WebSocket protocol (what the stock `wsLink` speaks), served by Sluice. It follows
 * `@trpc/server/adapters/ws` message for message (connection params, `started` / `data` / `stopped`,
 * `subscription.stop`, errors with `id: null` for the connection, `PING`/`PONG`, `reconnect`), and
 * runs queries and mutations through tRPC itself; only `chat.stream`, the hot path, is written
 * directly (see ws-chat-stream.ts): tRPC's adapter costs about three times raw `ws` per event and
 * over 100 KB per held stream.
 *
 * Unlike tRPC's adapter, it never queues replies for a client that does not read them: each
 * connection serves its messages one at a time, and stops reading the socket while it does. Every
 * call (and every answer to a message) waits for the reader's room before it starts, and queries
 * and mutations are answered before the next call starts; so a connection holds at most the
 * high-water mark plus one reply, and a reader that stays full is cut after the send timeout.
 * Subscriptions, once started, are paced by their own drain loop.
 */
export function createTrpcWsHandler(options: TrpcWsHandlerOptions): TrpcWsHandler {
  const { router, onError, maxBatch, maxSubscriptions } = options;
  if (!Number.isInteger(maxBatch) || maxBatch < 1) throw new RangeError(`trpc ws: maxBatch must be a positive integer, got ${maxBatch}`);
  if (!Number.isInteger(maxSubscriptions) || maxSubscriptions < 1) {
    throw new RangeError(`trpc ws: maxSubscriptions must be a positive integer, got ${maxSubscriptions}`);
  }
  const config = router._def._config;
  const shared: Shared = { options, router, config, keepAlive: new WsKeepAlive(options.keepAlive), connections: new WeakMap() };

  return {
    notifyReconnect(ws) {
      if (ws.readyState === OPEN) ws.send(RECONNECT);
    },
    afterStreams(ws, then) {
      shared.connections.get(ws)?.afterStreams(then);
    },
    refuse(ws, error, closeCode) {
      onError({ error, path: undefined });
      if (ws.readyState !== OPEN) return;
      const shape = getErrorShape({ config, ctx: undefined, error, type: 'unknown', path: undefined, input: undefined });
      ws.send(JSON.stringify(transformTRPCResponse(config, { id: null, error: shape })));
      closeRefused(ws, closeCode, error.message.slice(0, 120));
    },
    handleConnection(ws, req) {
      new WsConnection(shared, ws, req);
    },
  };
}

interface Shared {
  readonly options: TrpcWsHandlerOptions;
  readonly keepAlive: WsKeepAlive;
  readonly router: AppRouter;
  readonly config: AppRouter['_def']['_config'];
  readonly connections: WeakMap<WebSocket, WsConnection>;
}

/** A binary frame, kept as a mark: its bytes are never read (see decodeFrame). */
/** Messages, and their characters, read ahead of the one being served before the socket is paused. */
const INBOX_MAX_FRAMES = 16;
const INBOX_MAX_CHARS = 64 * 1024;
const BINARY_FRAME = Symbol('binary frame');
type Frame = string | typeof BINARY_FRAME;

/**
 * tRPC's JSON encoder takes text frames only and refuses a binary one as undecodable (the same
 * PARSE_ERROR, with its words); a client that sends one has a different encoder, not our protocol.
 */
function decodeFrame(frame: Frame): unknown {
  if (frame === BINARY_FRAME) throw new Error('jsonEncoder received binary data. JSON uses text frames. Use a binary encoder for binary data.');
  return JSON.parse(frame);
}

/**
 * One connection: its context, its running subscriptions and its request loop. A class rather
 * than a closure per step: a connection is held as long as its streams run, and a dozen closures
 * and their contexts cost each held stream about 1 KB.
 */
class WsConnection implements KeptAlive {
  readonly #s: Shared;
  readonly ws: WebSocket;
  seenAt = performance.now();
  pingedAt: number | undefined;
  readonly #socket: Socket;
  readonly #sink: ConnectionSink;
  /** What stops each running subscription (`subscription.stop`, or the connection's close). */
  readonly #subscriptions = new Map<number | string, { abort(): void }>();
  #ctx: TRPCContext | undefined;
  #ctxPromise: Promise<ContextResult> | undefined;
  /** Messages read and not served yet (see #serve), and their characters. */
  readonly #inbox: Frame[] = [];
  #inboxChars = 0;
  #serving = false;
  /** Waits for the last running subscription to end (see afterStreams). */
  #afterStreams: (() => void) | undefined;
  // Fields rather than methods: callbacks handed out, made once a connection. Not made where a call
  // starts: a subscription keeps its handler for its whole life, and a closure made in
  // #handleMessage would keep that message's text and parsed calls with it.
  readonly #reportError = (cause: unknown): void => this.#s.options.onError({ error: toTRPCError(cause), path: undefined });
  readonly #onMessage = (raw: RawData, isBinary: boolean): void => {
    this.seenAt = performance.now();
    if (isBinary) {
      this.#inbox.push(BINARY_FRAME);
      this.#inboxChars += 1;
    } else {
      const text = Buffer.isBuffer(raw) ? raw.toString('utf8') : Buffer.concat(raw instanceof ArrayBuffer ? [Buffer.from(raw)] : raw).toString('utf8');
      if (text === 'PONG') return;
      // Answered as it comes, as tRPC's adapter does, whatever calls wait: a stock wsLink's
      // keep-alive drops a connection whose PONG is a second late. (Not for a client that does not
      // read: its PINGs wait their turn, and the reader's room, as calls do.)
      if (text === 'PING' && this.#sink.hasRoom()) {
        this.ws.send('PONG');
        return;
      }
      this.#inbox.push(text);
      this.#inboxChars += text.length;
    }
    if (this.#inbox.length > INBOX_MAX_FRAMES || this.#inboxChars > INBOX_MAX_CHARS) this.ws.pause();
    if (!this.#serving) this.#serve().catch(this.#reportError);
  };

  constructor(shared: Shared, ws: WebSocket, req: IncomingMessage) {
    this.#s = shared;
    this.ws = ws;
    // Nothing here keeps the upgrade request (its headers are about 1.5 KB a held connection): what
    // is needed of it is read now.
    this.#socket = req.socket;
    this.#sink = shared.options.sinkFor(ws, req.socket);
    // With `?connectionParams=1` the client's first message carries them; otherwise start now.
    const query = req.url?.indexOf('?') ?? -1;
    const waitsForParams = query !== -1 && new URLSearchParams(req.url!.slice(query)).get('connectionParams') === '1';
    this.#ctxPromise = waitsForParams ? undefined : this.#createCtx(() => null);

    shared.keepAlive.watch(this);
    shared.connections.set(ws, this);
    ws.on('message', this.#onMessage);
    ws.once('close', () => {
      shared.keepAlive.forget(this);
      this.#afterStreams = undefined;
      ws.off('message', this.#onMessage);
      this.#inbox.length = 0;
      this.#inboxChars = 0;
      for (const stop of this.#subscriptions.values()) stop.abort();
      this.#subscriptions.clear();
    });
  }

  afterStreams(then: () => void): void {
    if (this.#subscriptions.size === 0) then();
    else this.#afterStreams = then;
  }

  #respond(message: TRPCResponseMessage): void {
    if (this.ws.readyState === OPEN) this.ws.send(JSON.stringify(transformTRPCResponse(this.#s.config, message)));
  }

  #errorShape(error: TRPCError, type: ProcedureType | 'unknown', path: string | undefined, input: unknown) {
    return getErrorShape({ config: this.#s.config, ctx: this.#ctx, error, type, path, input });
  }

  #respondWithError(
    id: number | string | null,
    jsonrpc: '2.0' | undefined,
    cause: unknown,
    type: ProcedureType | 'unknown',
    path?: string,
    input?: unknown,
  ): void {
    const error = toTRPCError(cause);
    this.#s.options.onError({ error, path });
    this.#respond({ id, jsonrpc, error: this.#errorShape(error, type, path, input) });
  }

  async #createCtx(connectionParams: () => TRPCRequestInfo['connectionParams']): Promise<ContextResult> {
    try {
      this.#ctx = await this.#s.options.createContext({ ws: this.ws, connectionParams: connectionParams(), sink: this.#sink });
      return { ok: true, ctx: this.#ctx };
    } catch (cause) {
      const error = toTRPCError(cause);
      this.#respondWithError(null, undefined, error, 'unknown');
      // As tRPC does: the refusal goes out first, then the socket closes.
      setImmediate(() => closeRefused(this.ws));
      return { ok: false, error };
    }
  }

  async #handleRequest(msg: TRPCClientOutgoingMessage, batchIndex: number, ctxResult: Promise<ContextResult>): Promise<void> {
    const { id, jsonrpc } = msg;
    if (id === null) {
      this.#respondWithError(null, jsonrpc, new TRPCError({ code: 'PARSE_ERROR', message: '`id` is required' }), 'unknown');
      return;
    }
    if (msg.method === 'subscription.stop') {
      this.#subscriptions.get(id)?.abort();
      return;
    }
    const { path, lastEventId } = msg.params;
    let { input } = msg.params;
    const type = msg.method;
    // The resume point travels in the input, where the procedure's schema declares it.
    if (lastEventId !== undefined) {
      if (input !== null && typeof input === 'object' && !Array.isArray(input)) input = { ...input, lastEventId };
      else input ??= { lastEventId };
    }
    if (type === 'subscription' && this.#subscriptions.has(id)) {
      this.#respondWithError(id, jsonrpc, new TRPCError({ code: 'BAD_REQUEST', message: `Duplicate id ${id}` }), type, path, input);
      return;
    }
    if (type === 'subscription' && this.#subscriptions.size >= this.#s.options.maxSubscriptions) {
      const message = `Too many subscriptions on this connection (limit ${this.#s.options.maxSubscriptions})`;
      this.#respondWithError(id, jsonrpc, new TRPCError({ code: 'TOO_MANY_REQUESTS', message }), type, path, input);
      return;
    }
    // `chat.stream`, the one held for minutes, is stopped through its listener: an AbortController
    // per stream would cost it about 1 KB and 2% of its CPU per event (see ws-chat-stream.ts).
    const stop = type === 'subscription' && path === 'chat.stream' ? new WsStreamStop() : new AbortController();
    if (type === 'subscription') this.#subscriptions.set(id, stop);
    try {
      const result = await ctxResult;
      if (!result.ok) throw result.error;
      if (this.ws.readyState !== OPEN) return;
      if (stop instanceof WsStreamStop) {
        if (stop.stopped) return;
        const sendStarted = (): void => this.#respond({ id, jsonrpc, result: { type: 'started' } });
        await runWsChatStream({ ws: this.ws, socket: this.#socket, id, jsonrpc, sendStarted }, result.ctx, input, stop);
      } else {
        if (stop.signal.aborted) return;
        await this.#callProcedure(id, jsonrpc, type, path, input, result.ctx, stop.signal, batchIndex);
      }
    } catch (cause) {
      stop.abort();
      this.#respondWithError(id, jsonrpc, cause, type, path, input);
      return;
    } finally {
      if (this.#subscriptions.get(id) === stop) {
        this.#subscriptions.delete(id);
        const then = this.#afterStreams;
        if (then && this.#subscriptions.size === 0) {
          this.#afterStreams = undefined;
          // Once this subscription's last frame (`stopped`, or its error) has gone.
          queueMicrotask(then);
        }
      }
    }
    if (type === 'subscription') this.#respond({ id, jsonrpc, result: { type: 'stopped' } });
  }

  // Queries, mutations and any other subscription go through tRPC's own procedure call.
  async #callProcedure(
    id: number | string,
    jsonrpc: '2.0' | undefined,
    type: ProcedureType,
    path: string,
    input: unknown,
    procedureCtx: TRPCContext,
    signal: AbortSignal,
    batchIndex: number,
  ): Promise<void> {
    const result: unknown = await callTRPCProcedure({
      router: this.#s.router,
      path,
      getRawInput: async () => input,
      ctx: procedureCtx,
      type,
      signal,
      batchIndex,
    });
    if (type !== 'subscription') {
      if (isAsyncIterable(result)) {
        throw new TRPCError({ code: 'UNSUPPORTED_MEDIA_TYPE', message: `Cannot return an async iterable from a ${type} procedure with WebSockets` });
      }
      this.#respond({ id, jsonrpc, result: { type: 'data', data: result } });
      return;
    }
    if (!isAsyncIterable(result)) {
      throw new TRPCError({ code: 'INTERNAL_SERVER_ERROR', message: `Subscription ${path} did not return an AsyncGenerator` });
    }
    this.#respond({ id, jsonrpc, result: { type: 'started' } });
    const iterator = result[Symbol.asyncIterator]();
    const stop = (): void => void iterator.return?.();
    signal.addEventListener('abort', stop, { once: true });
    try {
      for (let next = await iterator.next(); !next.done && !signal.aborted; next = await iterator.next()) {
        const value: unknown = next.value;
        if (isTrackedEnvelope(value)) {
          const [eventId, data] = value;
          this.#respond({ id, jsonrpc, result: { type: 'data', id: eventId, data: { id: eventId, data } } });
        } else this.#respond({ id, jsonrpc, result: { type: 'data', data: value } });
      }
    } finally {
      signal.removeEventListener('abort', stop);
      await iterator.return?.();
    }
  }

  /** True once the reader has room (at once, usually); false when it was cut off or is gone. */
  #room(): boolean | Promise<boolean> {
    return this.ws.readyState === OPEN && (this.#sink.hasRoom() || this.#sink.ready());
  }

  // As tRPC's adapter answers a batch over its `maxBatchSize`: each call with an id is refused.
  async #refuseBatch(items: unknown[]): Promise<void> {
    const error = batchTooLarge();
    this.#s.options.onError({ error, path: undefined });
    const shape = this.#errorShape(error, 'unknown', undefined, undefined);
    let responded = false;
    for (const item of items) {
      if (item === null || typeof item !== 'object') continue;
      const { id, method, jsonrpc } = item as { id?: unknown; method?: unknown; jsonrpc?: unknown };
      if (method === 'subscription.stop' || (typeof id !== 'number' && typeof id !== 'string')) continue;
      if (!(await this.#room())) return;
      this.#respond({ id, jsonrpc: jsonrpc === '2.0' ? '2.0' : undefined, error: shape });
      responded = true;
    }
    if (!responded) this.#respond({ id: null, error: shape });
  }

  async #handleMessage(text: Frame): Promise<void> {
    if (text === 'PING') {
      this.ws.send('PONG');
      return;
    }
    if (!this.#ctxPromise) {
      this.#ctxPromise = this.#createCtx(() => {
        let message: unknown;
        try {
          message = decodeFrame(text);
        } catch (cause) {
          throw new TRPCError({ code: 'PARSE_ERROR', message: 'Malformed TRPCConnectionParamsMessage', cause });
        }
        // An object, as tRPC's isObject has it: not an array (a batch sent before the params).
        if (message === null || typeof message !== 'object' || Array.isArray(message)) {
          throw new TRPCError({ code: 'PARSE_ERROR', message: 'Malformed TRPCConnectionParamsMessage' });
        }
        return parseConnectionParamsFromUnknown((message as { data?: unknown }).data);
      });
      return;
    }
    let json: unknown;
    let messages: TRPCClientOutgoingMessage[] | undefined;
    try {
      json = decodeFrame(text);
      const tooMany = Array.isArray(json) && json.length > this.#s.options.maxBatch;
      if (!tooMany) messages = (Array.isArray(json) ? json : [json]).map((item) => parseTRPCMessage(item, this.#s.config.transformer));
    } catch (cause) {
      this.#respondWithError(null, undefined, new TRPCError({ code: 'PARSE_ERROR', cause }), 'unknown');
      return;
    }
    if (!messages) {
      await this.#refuseBatch(json as unknown[]);
      return;
    }
    const ready = this.#ctxPromise;
    for (const [index, msg] of messages.entries()) {
      if (index > 0 && !(await this.#room())) return;
      const handled = this.#handleRequest(msg, index, ready).catch(this.#reportError);
      // A subscription runs on by itself; a query's reply goes out before the next call starts.
      if (msg.method !== 'subscription') await handled;
    }
  }

  /**
   * The connection's request loop: one message at a time. The socket is read meanwhile (a PING, the
   * client's close, its PONG to the server's keep-alive must get through while a call waits), but
   * not past a small inbox: beyond it what one socket makes the server hold is its kernel buffer.
   */
  async #serve(): Promise<void> {
    this.#serving = true;
    try {
      for (let text = this.#inbox.shift(); text !== undefined; text = this.#inbox.shift()) {
        this.#inboxChars -= text === BINARY_FRAME ? 1 : text.length;
        if (this.ws.isPaused && this.#inbox.length <= INBOX_MAX_FRAMES && this.#inboxChars <= INBOX_MAX_CHARS) this.ws.resume();
        if (!(await this.#room())) return;
        await this.#handleMessage(text);
      }
    } finally {
      this.#serving = false;
      // Closing too: the client's close frame must still be read.
      this.ws.resume();
    }
  }
}
