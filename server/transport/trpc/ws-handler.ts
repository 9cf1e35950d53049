import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { callTRPCProcedure, getErrorShape, transformTRPCResponse, TRPCError } from '@trpc/server';
import { handleKeepAlive } from '@trpc/server/adapters/ws';
import { parseConnectionParamsFromUnknown, type TRPCRequestInfo } from '@trpc/server/http';
import { parseTRPCMessage, type TRPCClientOutgoingMessage, type TRPCResponseMessage } from '@trpc/server/rpc';
import { isAsyncIterable, isTrackedEnvelope } from '@trpc/server/unstable-core-do-not-import';
import type { RawData, WebSocket } from 'ws';
import type { Sink } from '../backpressure.ts';
import type { TRPCContext } from './context.ts';
import type { AppRouter } from './router.ts';
import { toTRPCError } from './errors.ts';
import { runWsChatStream, WsStreamStop } from './ws-chat-stream.ts';

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
  readonly createContext: (opts: { ws: WebSocket; connectionParams: TRPCRequestInfo['connectionParams']; sink: Sink }) => Promise<TRPCContext>;
  /** Flow control towards one connection's client (`socket` is its TCP socket): every reply waits for its room. */
  readonly sinkFor: (ws: WebSocket, socket: Socket) => Sink;
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
  /** Refuses a connection as tRPC refuses one whose context fails: the error (id null), then the close. */
  refuse(ws: WebSocket, error: TRPCError, closeCode: number): void;
}

type ContextResult = { ok: true; ctx: TRPCContext } | { ok: false; error: TRPCError };

const RECONNECT = JSON.stringify({ id: null, method: 'reconnect' });

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

  return {
    notifyReconnect(ws) {
      if (ws.readyState === OPEN) ws.send(RECONNECT);
    },
    refuse(ws, error, closeCode) {
      onError({ error, path: undefined });
      if (ws.readyState !== OPEN) return;
      const shape = getErrorShape({ config, ctx: undefined, error, type: 'unknown', path: undefined, input: undefined });
      ws.send(JSON.stringify(transformTRPCResponse(config, { id: null, error: shape })));
      ws.close(closeCode, error.message.slice(0, 120));
    },
    handleConnection(ws, req) {
      // Nothing here keeps the upgrade request (its headers are about 1.5 KB a held connection): what
      // is needed of it is read now.
      const socket = req.socket;
      const sink = options.sinkFor(ws, socket);
      // What stops each running subscription (`subscription.stop`, or the connection's close).
      const subscriptions = new Map<number | string, { abort(): void }>();
      let ctx: TRPCContext | undefined;

      const respond = (message: TRPCResponseMessage): void => {
        if (ws.readyState === OPEN) ws.send(JSON.stringify(transformTRPCResponse(config, message)));
      };
      const errorShape = (error: TRPCError, type: ProcedureType | 'unknown', path: string | undefined, input: unknown) =>
        getErrorShape({ config, ctx, error, type, path, input });
      const respondWithError = (
        id: number | string | null,
        jsonrpc: '2.0' | undefined,
        cause: unknown,
        type: ProcedureType | 'unknown',
        path?: string,
        input?: unknown,
      ): void => {
        const error = toTRPCError(cause);
        onError({ error, path });
        respond({ id, jsonrpc, error: errorShape(error, type, path, input) });
      };

      const createCtx = async (connectionParams: () => TRPCRequestInfo['connectionParams']): Promise<ContextResult> => {
        try {
          ctx = await options.createContext({ ws, connectionParams: connectionParams(), sink });
          return { ok: true, ctx };
        } catch (cause) {
          const error = toTRPCError(cause);
          respondWithError(null, undefined, error, 'unknown');
          // As tRPC does: the refusal goes out first, then the socket closes.
          setImmediate(() => ws.close());
          return { ok: false, error };
        }
      };
      // With `?connectionParams=1` the client's first message carries them; otherwise start now.
      const query = req.url?.indexOf('?') ?? -1;
      const waitsForParams = query !== -1 && new URLSearchParams(req.url!.slice(query)).get('connectionParams') === '1';
      let ctxPromise: Promise<ContextResult> | undefined = waitsForParams ? undefined : createCtx(() => null);

      const handleRequest = async (msg: TRPCClientOutgoingMessage, batchIndex: number, ctxResult: Promise<ContextResult>): Promise<void> => {
        const { id, jsonrpc } = msg;
        if (id === null) {
          respondWithError(null, jsonrpc, new TRPCError({ code: 'PARSE_ERROR', message: '`id` is required' }), 'unknown');
          return;
        }
        if (msg.method === 'subscription.stop') {
          subscriptions.get(id)?.abort();
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
        if (type === 'subscription' && subscriptions.has(id)) {
          respondWithError(id, jsonrpc, new TRPCError({ code: 'BAD_REQUEST', message: `Duplicate id ${id}` }), type, path, input);
          return;
        }
        if (type === 'subscription' && subscriptions.size >= maxSubscriptions) {
          const message = `Too many subscriptions on this connection (limit ${maxSubscriptions})`;
          respondWithError(id, jsonrpc, new TRPCError({ code: 'TOO_MANY_REQUESTS', message }), type, path, input);
          return;
        }
        // `chat.stream`, the one held for minutes, is stopped through its listener: an AbortController
        // per stream would cost it about 1 KB and 2% of its CPU per event (see ws-chat-stream.ts).
        const stop = type === 'subscription' && path === 'chat.stream' ? new WsStreamStop() : new AbortController();
        if (type === 'subscription') subscriptions.set(id, stop);
        try {
          const result = await ctxResult;
          if (!result.ok) throw result.error;
          if (ws.readyState !== OPEN) return;
          if (stop instanceof WsStreamStop) {
            if (stop.stopped) return;
            const sendStarted = (): void => respond({ id, jsonrpc, result: { type: 'started' } });
            await runWsChatStream({ ws, socket, id, jsonrpc, sendStarted }, result.ctx, input, stop);
          } else {
            if (stop.signal.aborted) return;
            await callProcedure(id, jsonrpc, type, path, input, result.ctx, stop.signal, batchIndex);
          }
        } catch (cause) {
          stop.abort();
          respondWithError(id, jsonrpc, cause, type, path, input);
          return;
        } finally {
          if (subscriptions.get(id) === stop) subscriptions.delete(id);
        }
        if (type === 'subscription') respond({ id, jsonrpc, result: { type: 'stopped' } });
      };

      // Queries, mutations and any other subscription go through tRPC's own procedure call.
      const callProcedure = async (
        id: number | string,
        jsonrpc: '2.0' | undefined,
        type: ProcedureType,
        path: string,
        input: unknown,
        procedureCtx: TRPCContext,
        signal: AbortSignal,
        batchIndex: number,
      ): Promise<void> => {
        const result: unknown = await callTRPCProcedure({ router, path, getRawInput: async () => input, ctx: procedureCtx, type, signal, batchIndex });
        if (type !== 'subscription') {
          if (isAsyncIterable(result)) {
            throw new TRPCError({ code: 'UNSUPPORTED_MEDIA_TYPE', message: `Cannot return an async iterable from a ${type} procedure with WebSockets` });
          }
          respond({ id, jsonrpc, result: { type: 'data', data: result } });
          return;
        }
        if (!isAsyncIterable(result)) {
          throw new TRPCError({ code: 'INTERNAL_SERVER_ERROR', message: `Subscription ${path} did not return an AsyncGenerator` });
        }
        respond({ id, jsonrpc, result: { type: 'started' } });
        const iterator = result[Symbol.asyncIterator]();
        const stop = (): void => void iterator.return?.();
        signal.addEventListener('abort', stop, { once: true });
        try {
          for (let next = await iterator.next(); !next.done && !signal.aborted; next = await iterator.next()) {
            const value: unknown = next.value;
            if (isTrackedEnvelope(value)) {
              const [eventId, data] = value;
              respond({ id, jsonrpc, result: { type: 'data', id: eventId, data: { id: eventId, data } } });
            } else respond({ id, jsonrpc, result: { type: 'data', data: value } });
          }
        } finally {
          signal.removeEventListener('abort', stop);
          await iterator.return?.();
        }
      };

      // Made here, not where a call starts: a subscription holds its handler for its whole life, and
      // a closure made in handleMessage would keep that message's text and parsed calls with it.
      const reportError = (cause: unknown): void => onError({ error: toTRPCError(cause), path: undefined });

      // True once the reader has room (at once, usually); false when it was cut off or is gone.
      const room = (): boolean | Promise<boolean> => ws.readyState === OPEN && (sink.hasRoom() || sink.ready());

      // As tRPC's adapter answers a batch over its `maxBatchSize`: each call with an id is refused.
      const refuseBatch = async (items: unknown[]): Promise<void> => {
        const error = new TRPCError({ code: 'BAD_REQUEST', message: 'Batch call exceeds maximum size' });
        onError({ error, path: undefined });
        const shape = errorShape(error, 'unknown', undefined, undefined);
        let responded = false;
        for (const item of items) {
          if (item === null || typeof item !== 'object') continue;
          const { id, method, jsonrpc } = item as { id?: unknown; method?: unknown; jsonrpc?: unknown };
          if (method === 'subscription.stop' || (typeof id !== 'number' && typeof id !== 'string')) continue;
          if (!(await room())) return;
          respond({ id, jsonrpc: jsonrpc === '2.0' ? '2.0' : undefined, error: shape });
          responded = true;
        }
        if (!responded) respond({ id: null, error: shape });
      };

      const handleMessage = async (text: string): Promise<void> => {
        if (text === 'PING') {
          ws.send('PONG');
          return;
        }
        if (!ctxPromise) {
          ctxPromise = createCtx(() => {
            let message: unknown;
            try {
              message = JSON.parse(text);
            } catch (cause) {
              throw new TRPCError({ code: 'PARSE_ERROR', message: 'Malformed TRPCConnectionParamsMessage', cause });
            }
            if (message === null || typeof message !== 'object') {
              throw new TRPCError({ code: 'PARSE_ERROR', message: 'Malformed TRPCConnectionParamsMessage' });
            }
            return parseConnectionParamsFromUnknown((message as { data?: unknown }).data);
          });
          return;
        }
        let json: unknown;
        let messages: TRPCClientOutgoingMessage[] | undefined;
        try {
          json = JSON.parse(text);
          const tooMany = Array.isArray(json) && json.length > maxBatch;
          if (!tooMany) messages = (Array.isArray(json) ? json : [json]).map((item) => parseTRPCMessage(item, config.transformer));
        } catch (cause) {
          respondWithError(null, undefined, new TRPCError({ code: 'PARSE_ERROR', cause }), 'unknown');
          return;
        }
        if (!messages) {
          await refuseBatch(json as unknown[]);
          return;
        }
        const ready = ctxPromise;
        for (const [index, msg] of messages.entries()) {
          if (index > 0 && !(await room())) return;
          const handled = handleRequest(msg, index, ready).catch(reportError);
          // A subscription runs on by itself; a query's reply goes out before the next call starts.
          if (msg.method !== 'subscription') await handled;
        }
      };

      // The connection's request loop: one message at a time, with the socket not read meanwhile
      // (what a chunk already held still arrives, and waits here).
      const inbox: string[] = [];
      let serving = false;
      const serve = async (): Promise<void> => {
        serving = true;
        ws.pause();
        try {
          for (let text = inbox.shift(); text !== undefined; text = inbox.shift()) {
            if (!(await room())) return;
            await handleMessage(text);
          }
        } finally {
          serving = false;
          // Closing too: the client's close frame must still be read.
          ws.resume();
        }
      };
      const onMessage = (raw: RawData): void => {
        const text = Buffer.isBuffer(raw) ? raw.toString('utf8') : Buffer.concat(raw instanceof ArrayBuffer ? [Buffer.from(raw)] : raw).toString('utf8');
        if (text === 'PONG') return;
        inbox.push(text);
        if (!serving) serve().catch(reportError);
      };

      handleKeepAlive(ws, options.keepAlive.pingMs, options.keepAlive.pongWaitMs);
      ws.on('message', onMessage);
      ws.once('close', () => {
        ws.off('message', onMessage);
        inbox.length = 0;
        for (const stop of subscriptions.values()) stop.abort();
        subscriptions.clear();
      });
    },
  };
}
