import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { TRPCError } from '@trpc/server';
import { createHTTPHandler } from '@trpc/server/adapters/standalone';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Logger } from 'pino';
import { bearerToken, type ApiKeys } from '../../core/api-keys.ts';
import type { ChatService } from '../../core/chat-service.ts';
import { SluiceError } from '../../core/errors.ts';
import type { RateLimiter } from '../../core/rate-limiter.ts';
import type { Store } from '../../core/store/store.ts';
import type { Metrics } from '../../observability/metrics.ts';
import { createSink } from '../backpressure.ts';
import type { TRPCContext } from '../trpc/context.ts';
import { createAppRouter } from '../trpc/router.ts';
import { createTrpcWsHandler } from '../trpc/ws-handler.ts';
import { rejectionOf, sendError, sendJson } from './json-io.ts';
import { handleChatCompletions, handleModel, handleModels, sendOpenAIError } from './openai-route.ts';
import type { RouteDeps, RouteHandler } from './route-context.ts';
import { handleCancel, handleHistory } from './session-routes.ts';
import { handleWebAsset, handleWebPage } from './web-routes.ts';
import { handleChatStream } from './sse-route.ts';
import { handleUIChat, handleUIChatResume, handleUIChatStop } from './ui-chat-route.ts';
import { handleTrpcSse, type TrpcSseDeps } from './trpc-sse-route.ts';
import { clientIp, type TrustedProxies } from './client-ip.ts';

export interface HttpServerOptions {
  readonly service: ChatService;
  readonly store: Store;
  readonly logger: Logger;
  readonly keys: ApiKeys;
  readonly rateLimiter: RateLimiter;
  readonly metrics: Metrics;
  /** The model id the OpenAI-compatible routes serve. */
  readonly modelId: string;
  readonly maxBodyBytes: number;
  readonly ssePingMs: number;
  readonly wsEnabled: boolean;
  readonly wsMaxMessageBytes: number;
  readonly wsPingMs: number;
  readonly wsPongWaitMs: number;
  readonly maxWsConnectionsPerKey: number;
  readonly sendTimeoutMs: number;
  readonly highWaterBytes: number;
  /** Slots (WebSocket connections per key) expire this long after their instance stops refreshing them. */
  readonly slotTtlMs: number;
  /** False while the store is unreachable or the server shuts down (`GET /ready`). */
  readonly isReady: () => Promise<boolean>;
  /** Peers whose `X-Forwarded-For` names the client (TRUSTED_PROXIES); none by default. */
  readonly trustedProxies?: TrustedProxies;
}

export interface HttpServer {
  readonly server: Server;
  /** Asks every WebSocket client to reconnect (tRPC's reconnect notification), e.g. before a shutdown. */
  notifyReconnect(): void;
  /** Stops accepting, lets streaming responses end (up to `graceMs`), closes every socket. Safe to call twice. */
  close(graceMs?: number): Promise<void>;
}

interface Route {
  readonly method: string;
  readonly pattern: RegExp;
  readonly handler: RouteHandler;
  /** Served without an API key. */
  readonly open?: boolean;
  /** How this route answers errors found before its handler runs (auth, rate limit); Sluice's shape by default. */
  readonly sendError?: (res: ServerResponse, error: unknown) => void;
}

const ROUTES: readonly Route[] = [
  { method: 'GET', pattern: /^\/health$/, open: true, handler: async (_req, res) => sendJson(res, 200, { status: 'ok' }) },
  { method: 'POST', pattern: /^\/v1\/chat\/stream$/, handler: handleChatStream },
  { method: 'POST', pattern: /^\/v1\/chat\/cancel$/, handler: handleCancel },
  { method: 'GET', pattern: /^\/v1\/sessions\/([^/]+)\/messages$/, handler: handleHistory },
  { method: 'POST', pattern: /^\/v1\/chat\/completions$/, handler: handleChatCompletions, sendError: sendOpenAIError },
  { method: 'GET', pattern: /^\/v1\/models$/, handler: handleModels, sendError: sendOpenAIError },
  { method: 'GET', pattern: /^\/v1\/models\/([^/]+)$/, handler: handleModel, sendError: sendOpenAIError },
  { method: 'POST', pattern: /^\/v1\/ui\/chat$/, handler: handleUIChat },
  { method: 'GET', pattern: /^\/v1\/ui\/chat\/([^/]+)\/stream$/, handler: handleUIChatResume },
  { method: 'POST', pattern: /^\/v1\/ui\/chat\/([^/]+)\/stop$/, handler: handleUIChatStop },
  { method: 'GET', pattern: /^\/$/, open: true, handler: handleWebPage },
  { method: 'GET', pattern: /^\/assets\/([A-Za-z0-9._-]+)$/, open: true, handler: handleWebAsset },
];

/** One port for everything: Sluice's own routes, tRPC over HTTP/SSE under /trpc, tRPC over WebSocket at /trpc. */
export function createHttpServer(options: HttpServerOptions): HttpServer {
  const { service, logger, keys, store, metrics } = options;
  const router = createAppRouter({ ssePingMs: options.ssePingMs });
  const owners = new WeakMap<IncomingMessage, string>();
  const sinkFor = (res: ServerResponse) =>
    createSink({
      buffered: () => res.writableLength,
      drains: res,
      cut: () => res.destroy(),
      highWaterBytes: options.highWaterBytes,
      sendTimeoutMs: options.sendTimeoutMs,
    });
  const deps: RouteDeps = {
    service,
    logger,
    maxBodyBytes: options.maxBodyBytes,
    ssePingMs: options.ssePingMs,
    modelId: options.modelId,
    ownerOf: (req) => owners.get(req) ?? 'anonymous',
    sinkFor,
    metrics,
  };
  const checkRate = (owner: string) => options.rateLimiter.check(owner);
  const clientIpOf = (req: IncomingMessage): string | undefined =>
    options.trustedProxies ? clientIp(req.socket.remoteAddress, req.headers['x-forwarded-for'], options.trustedProxies) : req.socket.remoteAddress;

  const onTRPCError = ({ error, path }: { error: { code: string; cause?: unknown }; path?: string }): void => {
    if (error.code === 'INTERNAL_SERVER_ERROR') logger.error({ path, err: error.cause ?? error }, 'tRPC procedure failed');
    metrics.rejected(error.cause instanceof SluiceError ? error.cause.code : error.code.toLowerCase());
  };
  const trpcHandler = createHTTPHandler({
    router,
    basePath: '/trpc/',
    createContext: ({ req, res }): TRPCContext => ({
      service,
      owner: keys.identify(bearerToken(req.headers.authorization)),
      transport: 'trpc-http',
      checkRate,
      sink: sinkFor(res),
      metrics,
    }),
    onError: onTRPCError,
  });

  const trpcSse: TrpcSseDeps = { router, service, keys, rateLimiter: options.rateLimiter, metrics, ssePingMs: options.ssePingMs, sinkFor, onError: onTRPCError };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    if (path === '/trpc/chat.stream' && req.method === 'GET') {
      await handleTrpcSse(req, res, new URLSearchParams(q === -1 ? '' : url.slice(q + 1)), trpcSse);
      return;
    }
    if (path.startsWith('/trpc/')) {
      trpcHandler(req, res);
      return;
    }
    if (path === '/metrics' && req.method === 'GET') {
      const { contentType, body } = await metrics.render();
      res.writeHead(200, { 'Content-Type': contentType, 'Cache-Control': 'no-store' });
      res.end(body);
      return;
    }
    if (path === '/ready') {
      const ready = await options.isReady();
      sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : 'unavailable' });
      return;
    }
    for (const route of ROUTES) {
      const match = route.pattern.exec(path);
      if (!match) continue;
      if (req.method !== route.method) {
        sendError(res, new SluiceError('not_found', `${req.method} is not supported on ${path}`));
        return;
      }
      if (!route.open) {
        const answer = route.sendError ?? sendError;
        const owner = keys.identify(bearerToken(req.headers.authorization));
        if (!owner) {
          res.setHeader('WWW-Authenticate', 'Bearer');
          answer(res, new SluiceError('unauthorized'));
          return;
        }
        try {
          await options.rateLimiter.check(owner);
        } catch (error) {
          answer(res, error);
          return;
        }
        owners.set(req, owner);
      }
      await route.handler(req, res, deps, match.slice(1));
      return;
    }
    sendError(res, new SluiceError('not_found', `No route for ${req.method} ${path}`));
  };

  const server = createServer((req, res) => {
    const startedAt = performance.now();
    // Read now: a socket that is gone by the time the line is written no longer knows its peer.
    const ip = clientIpOf(req);
    // One line per request: never the query (tRPC puts the message there), the body or the key.
    res.once('close', () => {
      const reason = rejectionOf(res);
      if (reason) metrics.rejected(reason);
      logger.info(
        {
          method: req.method,
          path: (req.url ?? '/').split('?', 1)[0],
          status: res.statusCode,
          durationMs: Math.round(performance.now() - startedAt),
          owner: owners.get(req),
          clientIp: ip,
          ...(reason ? { reason } : {}),
          ...(res.writableFinished ? {} : { aborted: true }),
        },
        'request',
      );
    });
    handle(req, res).catch((error: unknown) => {
      const sluice = SluiceError.from(error);
      if (sluice.code === 'internal') logger.error({ err: error, url: req.url }, 'request handler failed');
      sendError(res, sluice);
    });
  });
  server.on('connection', (socket) => {
    metrics.connectionOpened('http');
    socket.once('close', () => metrics.connectionClosed('http'));
  });
  // Malformed HTTP never reaches a handler; answer it and drop the socket.
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    logger.debug({ code: error.code, reason: (error as { reason?: string }).reason }, 'malformed request');
    if (socket.writable && error.code !== 'ECONNRESET') socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });

  // WebSocket connections per key: slots in the store, refreshed by one timer while any are open.
  const wsSlots = new Map<WebSocket, { key: string; member: string }>();
  let slotTimer: NodeJS.Timeout | undefined;
  const refreshSlots = (): void => {
    for (const { key, member } of wsSlots.values()) store.refreshSlot(key, member, options.slotTtlMs).catch(() => undefined);
  };
  const takeWsSlot = async (ws: WebSocket, owner: string): Promise<void> => {
    const limit = options.maxWsConnectionsPerKey;
    if (limit === 0 || wsSlots.has(ws)) return;
    const slot = { key: `ws:${owner}`, member: randomBytes(8).toString('base64url') };
    if (!(await store.acquireSlot(slot.key, slot.member, limit, options.slotTtlMs))) {
      throw new TRPCError({ code: 'TOO_MANY_REQUESTS', message: `Too many WebSocket connections for this key (limit ${limit})` });
    }
    wsSlots.set(ws, slot);
    slotTimer ??= setInterval(refreshSlots, Math.max(100, Math.floor(options.slotTtlMs / 3))).unref();
    ws.once('close', () => {
      wsSlots.delete(ws);
      store.releaseSlot(slot.key, slot.member).catch(() => undefined);
      if (wsSlots.size === 0) {
        clearInterval(slotTimer);
        slotTimer = undefined;
      }
    });
  };

  const wss = new WebSocketServer({ noServer: true, maxPayload: options.wsMaxMessageBytes });
  const wsHandler = createTrpcWsHandler({
    router,
    createContext: async ({ req, ws, connectionParams }): Promise<TRPCContext> => {
      const apiKey = connectionParams?.['apiKey'];
      const owner = keys.identify(typeof apiKey === 'string' ? apiKey : undefined);
      if (owner) await takeWsSlot(ws, owner);
      return {
        service,
        owner,
        transport: 'trpc-ws',
        checkRate,
        metrics,
        // After the upgrade, the request's socket is the connection: its 'drain' is the WebSocket's.
        sink: createSink({
          buffered: () => ws.bufferedAmount,
          drains: req.socket,
          cut: () => ws.terminate(),
          highWaterBytes: options.highWaterBytes,
          sendTimeoutMs: options.sendTimeoutMs,
        }),
      };
    },
    // Half-open peers: a client that does not answer a ping within the wait is terminated.
    keepAlive: { pingMs: options.wsPingMs, pongWaitMs: options.wsPongWaitMs },
    onError: onTRPCError,
  });
  wss.on('connection', (socket, req: IncomingMessage) => {
    const openedAt = performance.now();
    const ip = clientIpOf(req);
    metrics.connectionOpened('ws');
    socket.on('error', (error) => logger.debug({ err: error }, 'websocket error'));
    wsHandler.handleConnection(socket, req);
    socket.once('close', (code) => {
      metrics.connectionClosed('ws');
      logger.info({ transport: 'ws', code, durationMs: Math.round(performance.now() - openedAt), clientIp: ip }, 'websocket closed');
    });
  });

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    const path = (req.url ?? '/').split('?', 1)[0];
    if (!options.wsEnabled || path !== '/trpc') {
      const status = options.wsEnabled ? '404 Not Found' : '403 Forbidden';
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });

  let closing: Promise<void> | undefined;
  const close = (graceMs = 2000): Promise<void> => {
    closing ??= (async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Let every stream write its last event before sockets go.
      const deadline = Date.now() + graceMs;
      while (service.openListeners > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      // 1012: service restart. Frames already queued are flushed before the close frame.
      for (const client of wss.clients) client.close(1012, 'server restarting');
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      server.closeIdleConnections();
      while ((await connectionCount(server)) > 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 10));
        server.closeIdleConnections();
      }
      server.closeAllConnections();
      for (const client of wss.clients) client.terminate();
      clearInterval(slotTimer);
      await closed;
    })();
    return closing;
  };

  return { server, notifyReconnect: () => wss.clients.forEach((client) => wsHandler.notifyReconnect(client)), close };
}

function connectionCount(server: Server): Promise<number> {
  return new Promise((resolve) => server.getConnections((error, count) => resolve(error ? 0 : count)));
}
