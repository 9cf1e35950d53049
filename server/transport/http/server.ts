import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { createHTTPHandler } from '@trpc/server/adapters/standalone';
import { applyWSSHandler } from '@trpc/server/adapters/ws';
import { WebSocketServer } from 'ws';
import type { Logger } from 'pino';
import type { ChatService } from '../../core/chat-service.ts';
import { SluiceError } from '../../core/errors.ts';
import type { TRPCContext } from '../trpc/context.ts';
import { createAppRouter } from '../trpc/router.ts';
import { sendError, sendJson } from './json-io.ts';
import type { RouteDeps, RouteHandler } from './route-context.ts';
import { handleChatCompletions, handleModel, handleModels } from './openai-route.ts';
import { handleCancel, handleHistory } from './session-routes.ts';

import { handleChatStream } from './sse-route.ts';

export interface HttpServerOptions {
  readonly service: ChatService;
  readonly logger: Logger;
  readonly maxBodyBytes: number;
  readonly ssePingMs: number;
  readonly wsEnabled: boolean;
  /** The model id the OpenAI-compatible routes serve. */
  readonly modelId: string;
}


export interface HttpServer {
  readonly server: Server;
  /** Stops accepting, closes every socket. Safe to call twice. */
  close(): Promise<void>;
}

interface Route {
  readonly method: string;
  readonly pattern: RegExp;
  readonly handler: RouteHandler;
}

const ROUTES: readonly Route[] = [
  { method: 'GET', pattern: /^\/health$/, handler: async (_req, res) => sendJson(res, 200, { status: 'ok' }) },
  { method: 'POST', pattern: /^\/v1\/chat\/stream$/, handler: handleChatStream },
  { method: 'POST', pattern: /^\/v1\/chat\/cancel$/, handler: handleCancel },
  { method: 'GET', pattern: /^\/v1\/sessions\/([^/]+)\/messages$/, handler: handleHistory },
  { method: 'POST', pattern: /^\/v1\/chat\/completions$/, handler: handleChatCompletions },
  { method: 'GET', pattern: /^\/v1\/models$/, handler: handleModels },
  { method: 'GET', pattern: /^\/v1\/models\/([^/]+)$/, handler: handleModel },

];

const ANONYMOUS = 'anonymous';

/** One port for everything: Sluice's own routes, tRPC over HTTP/SSE under /trpc, tRPC over WebSocket at /trpc. */
export function createHttpServer(options: HttpServerOptions): HttpServer {
  const { service, logger } = options;
  const router = createAppRouter({ ssePingMs: options.ssePingMs });
  const deps: RouteDeps = {
    service,
    logger,
    maxBodyBytes: options.maxBodyBytes,
    ssePingMs: options.ssePingMs,
    modelId: options.modelId,
    ownerOf
: () => ANONYMOUS,
  };

  const onTRPCError = ({ error, path }: { error: { code: string; cause?: unknown }; path?: string }): void => {
    if (error.code === 'INTERNAL_SERVER_ERROR') logger.error({ path, err: error.cause ?? error }, 'tRPC procedure failed');
  };
  const trpcHandler = createHTTPHandler({
    router,
    basePath: '/trpc/',
    createContext: (): TRPCContext => ({ service, owner: ANONYMOUS, transport: 'trpc-http' }),
    onError: onTRPCError,
  });

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    if (path.startsWith('/trpc/')) {
      trpcHandler(req, res);
      return;
    }
    for (const route of ROUTES) {
      const match = route.pattern.exec(path);
      if (!match) continue;
      if (req.method !== route.method) {
        sendError(res, new SluiceError('not_found', `${req.method} is not supported on ${path}`));
        return;
      }
      await route.handler(req, res, deps, match.slice(1));
      return;
    }
    sendError(res, new SluiceError('not_found', `No route for ${req.method} ${path}`));
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      logger.error({ err: error, url: req.url }, 'request handler failed');
      sendError(res, error);
    });
  });
  // Malformed HTTP never reaches a handler; answer it and drop the socket.
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    if (socket.writable && error.code !== 'ECONNRESET') socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });

  const wss = new WebSocketServer({ noServer: true });
  const wssHandler = applyWSSHandler({
    wss,
    router,
    createContext: (): TRPCContext => ({ service, owner: ANONYMOUS, transport: 'trpc-ws' }),
    keepAlive: { enabled: true, pingMs: 30_000, pongWaitMs: 10_000 },
    onError: onTRPCError,
  });
  wss.on('connection', (socket) => socket.on('error', (error) => logger.debug({ err: error }, 'websocket error')));

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    const path = (req.url ?? '/').split('?', 1)[0];
    if (!options.wsEnabled || path !== '/trpc') {
      socket.end(`HTTP/1.1 ${options.wsEnabled ? 404 : 403} ${options.wsEnabled ? 'Not Found' : 'Forbidden'}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      wssHandler.broadcastReconnectNotification();
      for (const client of wss.clients) client.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    })();
    return closing;
  };

  return { server, close };
}
