import type { Duplex } from 'node:stream';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Credentials } from '../../core/credentials.ts';
import type { ChatService } from '../../core/chat-service.ts';
import { SluiceError } from '../../core/errors.ts';
import type { Leases } from '../../core/leases.ts';
import { within } from '../../../shared/within.ts';
import { clientIp, type TrustedProxies } from '../../net/client-ip.ts';
import type { Metrics } from '../../observability/metrics.ts';
import type { Admission } from '../admission.ts';
import { createSink } from '../backpressure.ts';
import { HeldAnswers } from '../held-answers.ts';
import { chatApi } from '../trpc/context.ts';
import { createAppRouter } from '../trpc/router.ts';
import { createTrpcHttpRoutes } from '../trpc/http-routes.ts';
import { createUpgradeHandler } from '../trpc/upgrade.ts';
import { createTrpcWsServer } from '../trpc/ws-server.ts';
import { watchConnections } from './connections.ts';
import { createDispatcher } from './dispatch.ts';
import { sendError } from './json-io.ts';
import { logRefusedUpgrade, logWhenClosed } from './request-log.ts';
import { toOriginForm } from './request-target.ts';
import { asksForWebSocket, serveIgnoringUpgrade } from './ignored-upgrade.ts';
import { awaitsInvitation } from './expect-continue.ts';
import type { OriginPolicy } from './origin-policy.ts';
import type { RouteDeps } from './route-context.ts';

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
  /** Characters of history one tRPC request over HTTP (a batch) is answered with (MAX_BATCH_ANSWER_CHARS). */
  readonly maxBatchAnswerChars: number;
  /** Characters of whole answers held for readers that have not taken them (MAX_HELD_ANSWER_BYTES; see HeldAnswers). */
  readonly maxHeldAnswerBytes: number;
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
  /**
   * The instance is draining: every WebSocket client is asked to reconnect (tRPC's reconnect
   * notification), and every HTTP connection closes once its response is over.
   */
  beginDrain(): void;
  /** The API keys changed (a reload): WebSockets signed in with a removed key end as revoked. */
  recheckCredentials(): Promise<void>;
  /** Stops accepting, lets streaming responses end (up to `graceMs`), closes every socket. Safe to call twice. */
  close(graceMs?: number): Promise<void>;
}

/** One port for everything: Sluice's own routes, tRPC over HTTP/SSE under /trpc, tRPC over WebSocket at /trpc. */
export function createHttpServer(options: HttpServerOptions): HttpServer {
  const { service, admission, logger, metrics, origins } = options;
  const router = createAppRouter({ ssePingMs: options.ssePingMs });
  const heldAnswers = new HeldAnswers(options.maxHeldAnswerBytes);
  const chat = chatApi(admission, service, heldAnswers);
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
    metrics.rejected(error.cause instanceof SluiceError ? (error.cause.reason ?? error.cause.code) : error.code.toLowerCase());
  };

  const trpc = createTrpcHttpRoutes({
    router,
    chat,
    metrics,
    ssePingMs: options.ssePingMs,
    sinkFor,
    onError: onTRPCError,
    maxBodyBytes: options.maxBodyBytes,
    maxBatch: options.wsMaxBatch,
    maxBatchAnswerChars: options.maxBatchAnswerChars,
  });
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
    trpc,
    heldAnswers,
  };

  const handle = createDispatcher({ admission, origins, deps, owners });

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
  // The body of an `Expect: 100-continue` request is invited once its headers pass (see expect-continue.ts).
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    awaitsInvitation(req, res);
    onRequest(req, res);
  });
  server.maxConnections = options.maxConnections;
  const connections = watchConnections(server, metrics, logger, options.sendTimeoutMs);

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    toOriginForm(req);
    logWhenClosed(req, res, { logger, metrics, clientIp: clientIpOf(req), ownerOf: (r) => owners.get(r) });
    // What a handler did not answer itself (the request log logs an internal error's cause).
    connections.serve(req, res, () => void handle(req, res).catch((error: unknown) => sendError(res, SluiceError.from(error))));
  };

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
  const refused = (req: IncomingMessage, status: number, reason: string): void =>
    logRefusedUpgrade(req, status, reason, { logger, metrics, clientIp: clientIpOf(req), ownerOf: () => undefined });
  const upgrade = createUpgradeHandler({ enabled: options.wsEnabled, origins, refused, connections, ws });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (!asksForWebSocket(req)) return serveIgnoringUpgrade(server, req, socket, head);
    toOriginForm(req);
    upgrade(req, socket, head);
  });

  let closing: Promise<void> | undefined;
  const close = (graceMs = 2000): Promise<void> => {
    closing ??= (async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Let every stream write its last event before sockets go.
      const deadline = Date.now() + graceMs;
      while (service.openListeners > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      // A peer that never answers the close frame is not waited for past the grace (ws would wait 30 s).
      await within(ws.close(), Math.max(0, deadline - Date.now()), () => undefined);
      server.closeIdleConnections();
      while ((await connections.count()) > 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 10));
        server.closeIdleConnections();
      }
      server.closeAllConnections();
      ws.terminate();
      await closed;
    })();
    return closing;
  };

  const beginDrain = (): void => {
    ws.notifyReconnect();
    connections.closeAfterResponses();
  };

  return { server, beginDrain, close, recheckCredentials: () => ws.recheckCredentials() };
}
