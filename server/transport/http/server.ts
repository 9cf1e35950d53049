import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { createHTTPHandler } from '@trpc/server/adapters/standalone';
import type { Logger } from 'pino';
import type { Credentials } from '../../core/credentials.ts';
import type { ChatService } from '../../core/chat-service.ts';
import { SluiceError } from '../../core/errors.ts';
import type { Leases } from '../../core/leases.ts';
import { clientIp, type TrustedProxies } from '../../net/client-ip.ts';
import type { Metrics } from '../../observability/metrics.ts';
import type { Admission } from '../admission.ts';
import { createSink } from '../backpressure.ts';
import { credentialFromParams } from '../trpc/connection-params.ts';
import { chatApi, type TRPCContext } from '../trpc/context.ts';
import { createAppRouter } from '../trpc/router.ts';
import { handleTrpcSse } from '../trpc/sse-producer.ts';
import { createTrpcWsServer } from '../trpc/ws-server.ts';
import { bearerToken } from './bearer.ts';
import { rejectionOf, sendError } from './json-io.ts';
import { normalizePath } from './normalize-path.ts';
import type { OriginPolicy } from './origin-policy.ts';
import type { RouteDeps } from './route-context.ts';
import { ROUTES } from './routes.ts';

export interface HttpServerOptions {
  readonly service: ChatService;
  readonly admission: Admission;
  readonly credentials: Credentials;
  readonly leases: Leases;
  readonly logger: Logger;
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
  /** Calls one tRPC batch may carry, over WebSocket and HTTP (WS_MAX_BATCH). */
  readonly wsMaxBatch: number;
  /** Subscriptions one WebSocket may hold at once (WS_MAX_SUBSCRIPTIONS). */
  readonly wsMaxSubscriptions: number;
  /** With credentials required, how long a WebSocket may go without showing one (WS_AUTH_TIMEOUT_MS). */
  readonly wsAuthTimeoutMs: number;
  readonly sendTimeoutMs: number;
  readonly highWaterBytes: number;
  /** How long a client may take to send a whole request, headers and body (408 after). */
  readonly requestTimeoutMs: number;
  /** How long an idle keep-alive connection is kept: longer than the proxies' in front keep theirs. */
  readonly keepAliveTimeoutMs: number;
  /** Connections (WebSockets included) this process holds at most; those beyond are closed at once. */
  readonly maxConnections: number;
  /** False while the store is unreachable or the server shuts down (`GET /ready`). */
  readonly isReady: () => Promise<boolean>;
  /** Which browser pages may call (ALLOWED_ORIGINS), on every route but the page's and on WebSocket upgrades. */
  readonly origins: OriginPolicy;
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

/** One port for everything: Sluice's own routes, tRPC over HTTP/SSE under /trpc, tRPC over WebSocket at /trpc. */
export function createHttpServer(options: HttpServerOptions): HttpServer {
  const { service, admission, logger, metrics, origins } = options;
  const router = createAppRouter({ ssePingMs: options.ssePingMs });
  const chat = chatApi(admission, service);
  const owners = new WeakMap<IncomingMessage, string>();
  const sinkFor = (res: ServerResponse) =>
    createSink({
      buffered: () => res.writableLength,
      drains: res,
      cut: () => res.destroy(),
      highWaterBytes: options.highWaterBytes,
      sendTimeoutMs: options.sendTimeoutMs,
    });
  const clientIpOf = (req: IncomingMessage): string | undefined =>
    options.trustedProxies ? clientIp(req.socket.remoteAddress, req.headers['x-forwarded-for'], options.trustedProxies) : req.socket.remoteAddress;
  const onTRPCError = ({ error, path }: { error: { code: string; cause?: unknown }; path?: string }): void => {
    if (error.code === 'INTERNAL_SERVER_ERROR') logger.error({ path, err: error.cause ?? error }, 'tRPC procedure failed');
    metrics.rejected(error.cause instanceof SluiceError ? error.cause.code : error.code.toLowerCase());
  };

  const trpcHttp = createHTTPHandler({
    router,
    basePath: '/trpc/',
    // The bounds of the other routes: MAX_BODY_BYTES (413, nothing kept beyond it), and WS_MAX_BATCH calls per batch.
    maxBodySize: options.maxBodyBytes,
    maxBatchSize: options.wsMaxBatch,
    createContext: ({ req, res, info }): TRPCContext => ({
      chat,
      credential: bearerToken(req.headers.authorization) ?? credentialFromParams(info.connectionParams),
      transport: 'trpc-http',
      sink: sinkFor(res),
      metrics,
    }),
    onError: onTRPCError,
  });
  const trpcSse = { router, chat, metrics, ssePingMs: options.ssePingMs, sinkFor, onError: onTRPCError };
  const deps: RouteDeps = {
    service,
    admission,
    logger,
    maxBodyBytes: options.maxBodyBytes,
    ssePingMs: options.ssePingMs,
    modelId: options.modelId,
    ownerOf: (req) => owners.get(req) ?? 'anonymous',
    sinkFor,
    metrics,
    isReady: options.isReady,
    trpc: {
      sse: (req, res) => handleTrpcSse(req, res, new URLSearchParams(queryOf(req.url)), trpcSse),
      http: (req, res) => trpcHttp(req, res),
    },
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = normalizePath(q === -1 ? url : url.slice(0, q));
    // tRPC reads the procedure from the URL too: it must see the path the route was chosen by.
    if (path !== undefined) req.url = q === -1 ? path : path + url.slice(q);
    for (const route of path === undefined ? [] : ROUTES) {
      const match = route.path.exec(path!);
      if (!match) continue;
      if (!route.anySite && origins.isPreflight(req)) {
        origins.preflight(req, res);
        return;
      }
      if (route.method !== '*' && req.method !== route.method) {
        sendError(res, new SluiceError('not_found', `${req.method} is not supported on ${path}`));
        return;
      }
      if (!route.anySite) {
        const verdict = origins.check(req);
        if (verdict.kind === 'refused') {
          (route.sendError ?? sendError)(res, new SluiceError('forbidden', verdict.reason));
          return;
        }
        origins.expose(res, verdict);
      }
      if (!route.open) {
        try {
          owners.set(req, await admission.owner(bearerToken(req.headers.authorization)));
        } catch (error) {
          if (error instanceof SluiceError && error.code === 'unauthorized') res.setHeader('WWW-Authenticate', 'Bearer');
          (route.sendError ?? sendError)(res, error);
          return;
        }
      }
      await route.handler(req, res, deps, match.slice(1));
      return;
    }
    sendError(res, new SluiceError('not_found', `No route for ${req.method} ${path ?? url.slice(0, q === -1 ? undefined : q)}`));
  };

  const requestTimeout = options.requestTimeoutMs;
  const server = createServer(
    {
      requestTimeout,
      // Node requires it to be at most the request timeout.
      headersTimeout: Math.min(60_000, requestTimeout),
      // How often requests are checked against those timeouts (Node's default, 30 s, would let one run a timeout and a half).
      connectionsCheckingInterval: Math.max(50, Math.min(5_000, Math.floor(requestTimeout / 10))),
      keepAliveTimeout: options.keepAliveTimeoutMs,
    },
    (req, res) => onRequest(req, res),
  );
  server.maxConnections = options.maxConnections;
  server.on('drop', () => metrics.rejected('too_many_connections'));
  // The response in flight on each connection, so that a connection-level error never writes into one that has started.
  const inFlight = new WeakMap<Duplex, ServerResponse>();

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    inFlight.set(req.socket, res);
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
  };
  // A connection is counted once: as http until it asks for an upgrade, then by the WebSocket server.
  const httpConnections = new WeakSet<Duplex>();
  server.on('connection', (socket) => {
    metrics.connectionOpened('http');
    httpConnections.add(socket);
    socket.once('close', () => httpConnections.delete(socket) && metrics.connectionClosed('http'));
  });
  // Malformed HTTP never reaches a handler, and a request too slow to arrive is given up on: answer
  // it (unless a response has started) and drop the socket.
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    logger.debug({ code: error.code, reason: (error as { reason?: string }).reason }, 'malformed request');
    const timedOut = error.code === 'ERR_HTTP_REQUEST_TIMEOUT';
    if (timedOut) metrics.rejected('request_timeout');
    if (socket.writable && error.code !== 'ECONNRESET' && !inFlight.get(socket)?.headersSent) {
      socket.end(`HTTP/1.1 ${timedOut ? '408 Request Timeout' : '400 Bad Request'}\r\nConnection: close\r\n\r\n`);
    } else socket.destroy();
  });

  const ws = createTrpcWsServer({
    router,
    chat,
    credentials: options.credentials,
    leases: options.leases,
    metrics,
    logger,
    clientIpOf,
    onError: onTRPCError,
    maxMessageBytes: options.wsMaxMessageBytes,
    pingMs: options.wsPingMs,
    pongWaitMs: options.wsPongWaitMs,
    maxConnectionsPerKey: options.maxWsConnectionsPerKey,
    maxBatch: options.wsMaxBatch,
    maxSubscriptions: options.wsMaxSubscriptions,
    authTimeoutMs: options.wsAuthTimeoutMs,
    highWaterBytes: options.highWaterBytes,
    sendTimeoutMs: options.sendTimeoutMs,
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (httpConnections.delete(socket)) metrics.connectionClosed('http');
    socket.on('error', () => socket.destroy());
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    if (!options.wsEnabled || normalizePath(q === -1 ? url : url.slice(0, q)) !== '/trpc') {
      const status = options.wsEnabled ? '404 Not Found' : '403 Forbidden';
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    if (!origins.allowsUpgrade(req)) {
      metrics.rejected('forbidden');
      socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    ws.handleUpgrade(req, socket, head);
  });

  let closing: Promise<void> | undefined;
  const close = (graceMs = 2000): Promise<void> => {
    closing ??= (async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Let every stream write its last event before sockets go.
      const deadline = Date.now() + graceMs;
      while (service.openListeners > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      await ws.close();
      server.closeIdleConnections();
      while ((await connectionCount(server)) > 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 10));
        server.closeIdleConnections();
      }
      server.closeAllConnections();
      ws.terminate();
      await closed;
    })();
    return closing;
  };

  return { server, notifyReconnect: () => ws.notifyReconnect(), close };
}

function queryOf(url: string | undefined): string {
  const q = url?.indexOf('?') ?? -1;
  return q === -1 ? '' : url!.slice(q + 1);
}

function connectionCount(server: Server): Promise<number> {
  return new Promise((resolve) => server.getConnections((error, count) => resolve(error ? 0 : count)));
}
