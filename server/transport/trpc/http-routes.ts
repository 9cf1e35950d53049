import type { IncomingMessage, ServerResponse } from 'node:http';
import { finished } from 'node:stream/promises';
import { createHTTPHandler } from '@trpc/server/adapters/standalone';
import type { Sink } from '../backpressure.ts';
import type { StreamMetrics } from '../drain.ts';
import { bearerToken } from '../http/bearer.ts';
import { credentialFromParams } from './connection-params.ts';
import type { ChatApi, TRPCContext } from './context.ts';
import { AnswerBudget } from './answer-budget.ts';
import type { AppRouter } from './router.ts';
import { getErrorShape } from '@trpc/server/unstable-core-do-not-import';
import superjson from 'superjson';
import { batchTooLarge, toTRPCError } from './errors.ts';
import { handleTrpcSse, type TrpcSseOptions } from './sse-producer.ts';

export interface TrpcHttpRoutesOptions {
  readonly router: AppRouter;
  readonly chat: ChatApi;
  readonly metrics: StreamMetrics;
  readonly ssePingMs: number;
  readonly sinkFor: (res: ServerResponse) => Sink;
  readonly onError: TrpcSseOptions['onError'];
  /** Largest request body (MAX_BODY_BYTES): 413 above, nothing kept beyond it. */
  readonly maxBodyBytes: number;
  /** Calls one batch may carry (WS_MAX_BATCH, as over WebSocket). */
  readonly maxBatch: number;
  /** Characters of history one request is answered with (see AnswerBudget). */
  readonly maxBatchAnswerChars: number;
}

export interface TrpcHttpRoutes {
  /** `GET /trpc/chat.stream`: Sluice's own SSE producer. */
  readonly sse: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
  /** Every other call under `/trpc/`: tRPC's HTTP handler, with the same bounds as the other routes. */
  readonly http: (req: IncomingMessage, res: ServerResponse) => void;
  /**
   * A call refused before tRPC reads it (the origin policy's host or page check), answered in
   * tRPC's words, so that a tRPC client gets it typed (`data.sluiceCode`): tRPC's HTTP error, one a
   * call for a batch. (A subscription's refusal keeps its status: an EventSource reads no body of
   * an answer other than 200.)
   */
  readonly refuse: (req: IncomingMessage, res: ServerResponse, error: unknown) => void;
}

const NOT_SHARED = new Headers([
  ['vary', 'Origin'],
  ['cache-control', 'no-store'],
]);
/** As every route answers a refused credential (RFC 6750): the scheme to use. */
const NOT_SHARED_UNAUTHORIZED = new Headers([...NOT_SHARED, ['www-authenticate', 'Bearer']]);

/** tRPC over HTTP: the subscription through Sluice's SSE producer, queries and mutations through tRPC's handler. */
export function createTrpcHttpRoutes(o: TrpcHttpRoutesOptions): TrpcHttpRoutes {
  const http = createHTTPHandler({
    router: o.router,
    basePath: '/trpc/',
    maxBodySize: o.maxBodyBytes,
    maxBatchSize: o.maxBatch,
    createContext: ({ req, res, info }): TRPCContext => ({
      chat: o.chat,
      credential: bearerToken(req.headers.authorization) ?? credentialFromParams(info.connectionParams),
      transport: 'trpc-http',
      sink: o.sinkFor(res),
      metrics: o.metrics,
      answers: new AnswerBudget(o.maxBatchAnswerChars),
      answerTaken: () => finished(res),
    }),
    onError: o.onError,
    // tRPC writes its own `Vary`, over the origin policy's: an answer to one page must not be kept
    // by a cache for another. And every answer here is one caller's (history, refusals): never kept.
    responseMeta: ({ errors }) => ({ headers: errors.some((e) => e.code === 'UNAUTHORIZED') ? NOT_SHARED_UNAUTHORIZED : NOT_SHARED }),
  });
  return {
    sse: (req, res) => handleTrpcSse(req, res, new URLSearchParams(queryOf(req.url)), o),
    http: (req, res) => http(req, res),
    refuse: (req, res, caught) => {
      const url = req.url ?? '/trpc/';
      const query = new URLSearchParams(queryOf(url));
      const batch = query.get('batch') === '1';
      const paths = safeDecode(url.slice('/trpc/'.length, url.indexOf('?') === -1 ? undefined : url.indexOf('?'))).split(',');
      // As tRPC's handler refuses a batch past its bound: whole, with one error, before any call
      // (else a 14 KB URL would be answered, and counted, as thousands of refusals).
      if (batch && paths.length > o.maxBatch) {
        const error = batchTooLarge();
        o.onError({ error, path: undefined });
        const shape = getErrorShape({ config: o.router._def._config, error, type: 'unknown', path: undefined, input: undefined, ctx: undefined });
        res.writeHead(shape.data.httpStatus, { 'content-type': 'application/json', vary: 'Origin', 'cache-control': 'no-store' });
        res.end(JSON.stringify({ error: superjson.serialize(shape) }));
        return;
      }
      const error = toTRPCError(caught);
      const shapes = paths.map((path) => {
        o.onError({ error, path });
        return getErrorShape({ config: o.router._def._config, error, type: 'unknown', path, input: undefined, ctx: undefined });
      });
      res.writeHead(shapes[0]!.data.httpStatus, { 'content-type': 'application/json', vary: 'Origin', 'cache-control': 'no-store' });
      const bodies = shapes.map((shape) => ({ error: superjson.serialize(shape) }));
      res.end(JSON.stringify(batch ? bodies : bodies[0]));
    },
  };
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function queryOf(url: string | undefined): string {
  const q = url?.indexOf('?') ?? -1;
  return q === -1 ? '' : url!.slice(q + 1);
}
