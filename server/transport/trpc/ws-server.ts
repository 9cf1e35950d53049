import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { TRPCError } from '@trpc/server';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Credentials } from '../../core/credentials.ts';
import type { Held, Leases } from '../../core/leases.ts';
import { createSink } from '../backpressure.ts';
import type { StreamMetrics } from '../drain.ts';
import { credentialFromParams } from './connection-params.ts';
import type { ChatApi, TRPCContext } from './context.ts';
import type { AppRouter } from './router.ts';
import { createTrpcWsHandler, type TrpcWsErrorInfo } from './ws-handler.ts';

export interface TrpcWsServerOptions {
  readonly router: AppRouter;
  readonly chat: ChatApi;
  readonly credentials: Credentials;
  readonly leases: Leases;
  readonly metrics: StreamMetrics & { connectionOpened(transport: 'ws'): void; connectionClosed(transport: 'ws'): void };
  readonly logger: Logger;
  readonly clientIpOf: (req: IncomingMessage) => string | undefined;
  readonly onError: (info: TrpcWsErrorInfo) => void;
  readonly maxMessageBytes: number;
  readonly pingMs: number;
  readonly pongWaitMs: number;
  /** WebSocket connections a key may hold at once, across instances (0: no limit). */
  readonly maxConnectionsPerKey: number;
  readonly highWaterBytes: number;
  readonly sendTimeoutMs: number;
}

export interface TrpcWsServer {
  /** Takes over an upgrade request for `/trpc`. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Asks every client to reconnect (tRPC's reconnect notification), e.g. before a shutdown. */
  notifyReconnect(): void;
  /** Closes every connection (1012: service restart; queued frames go first), then stops. */
  close(): Promise<void>;
  /** Drops whatever is still connected. */
  terminate(): void;
}

/** tRPC over WebSocket at `/trpc`: the connections, their context and limits. */
export function createTrpcWsServer(o: TrpcWsServerOptions): TrpcWsServer {
  const { metrics, logger } = o;
  const wss = new WebSocketServer({ noServer: true, maxPayload: o.maxMessageBytes });

  // WebSocket connections per key: slots held (and refreshed) while the connection is open.
  const slots = new WeakMap<WebSocket, Held>();
  const takeSlot = async (ws: WebSocket, owner: string): Promise<void> => {
    const limit = o.maxConnectionsPerKey;
    if (limit === 0 || slots.has(ws)) return;
    const slot = await o.leases.takeSlot(`ws:${owner}`, limit);
    if (!slot) throw new TRPCError({ code: 'TOO_MANY_REQUESTS', message: `Too many WebSocket connections for this key (limit ${limit})` });
    slots.set(ws, slot);
    ws.once('close', () => void slot.release());
  };

  const handler = createTrpcWsHandler({
    router: o.router,
    createContext: async ({ req, ws, connectionParams }): Promise<TRPCContext> => {
      const credential = credentialFromParams(connectionParams);
      const owner = await o.credentials.ownerOf(credential);
      if (owner) await takeSlot(ws, owner);
      return {
        chat: o.chat,
        credential,
        transport: 'trpc-ws',
        metrics,
        // After the upgrade, the request's socket is the connection: its 'drain' is the WebSocket's.
        sink: createSink({
          buffered: () => ws.bufferedAmount,
          drains: req.socket,
          cut: () => ws.terminate(),
          highWaterBytes: o.highWaterBytes,
          sendTimeoutMs: o.sendTimeoutMs,
        }),
      };
    },
    // Half-open peers: a client that does not answer a ping within the wait is terminated.
    keepAlive: { pingMs: o.pingMs, pongWaitMs: o.pongWaitMs },
    onError: o.onError,
  });

  wss.on('connection', (socket, req: IncomingMessage) => {
    const openedAt = performance.now();
    const ip = o.clientIpOf(req);
    metrics.connectionOpened('ws');
    socket.on('error', (error) => logger.debug({ err: error }, 'websocket error'));
    handler.handleConnection(socket, req);
    socket.once('close', (code) => {
      metrics.connectionClosed('ws');
      logger.info({ transport: 'ws', code, durationMs: Math.round(performance.now() - openedAt), clientIp: ip }, 'websocket closed');
    });
  });

  return {
    handleUpgrade: (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req)),
    notifyReconnect: () => wss.clients.forEach((client) => handler.notifyReconnect(client)),
    close: async () => {
      for (const client of wss.clients) client.close(1012, 'server restarting');
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
    terminate: () => {
      for (const client of wss.clients) client.terminate();
    },
  };
}
