import { setImmediate as nextTurn } from 'node:timers/promises';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { TRPCError } from '@trpc/server';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { identityOf, type Credentials } from '../../core/credentials.ts';
import { ERROR_MESSAGES } from '../../core/errors.ts';
import type { Held, Leases } from '../../core/leases.ts';
import { createSink } from '../backpressure.ts';
import type { StreamMetrics } from '../drain.ts';
import { credentialFromParams } from './connection-params.ts';
import type { ChatApi, TRPCContext } from './context.ts';
import type { AppRouter } from './router.ts';
import { createWsAuthWindow, type WsAuthWindowOptions } from './ws-auth-window.ts';
import { createTrpcWsHandler, type TrpcWsErrorInfo } from './ws-handler.ts';
import { WsSignIns } from './ws-sign-ins.ts';

export interface TrpcWsServerOptions {
  readonly router: AppRouter;
  readonly chat: ChatApi;
  readonly credentials: Credentials;
  readonly leases: Leases;
  readonly metrics: StreamMetrics & WsAuthWindowOptions['metrics'];
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
  /** Calls one message may carry. */
  readonly maxBatch: number;
  /** Subscriptions one connection may hold at once. */
  readonly maxSubscriptions: number;
  /**
   * With credentials required, how long a connection may stay without showing a valid one; and how
   * long one whose credential ended has to go once it was told to reconnect.
   */
  readonly authTimeoutMs: number;
}

export interface TrpcWsServer {
  /** Takes over an upgrade request for `/trpc`. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Asks every client to reconnect (tRPC's reconnect notification), e.g. before a shutdown. */
  notifyReconnect(): void;
  /** The keys changed (a reload): connections signed in with a key that was removed end (see ws-sign-ins.ts). */
  recheckCredentials(): Promise<void>;
  /** Closes every connection (1012: service restart; queued frames go first), then stops. */
  close(): Promise<void>;
  /** Drops whatever is still connected. */
  terminate(): void;
}

const POLICY_VIOLATION = 1008;

/** How often the connections' token expiries are looked for: an expiry is seen within a second. */
const EXPIRY_TICK_MS = 1000;

/** tRPC over WebSocket at `/trpc`: the connections, their context and limits. */
export function createTrpcWsServer(o: TrpcWsServerOptions): TrpcWsServer {
  const { metrics, logger } = o;
  // No permessage-deflate (ws's default, stated because the streams write their frames themselves: see ws-frames.ts).
  const wss = new WebSocketServer({ noServer: true, maxPayload: o.maxMessageBytes, perMessageDeflate: false });

  // WebSocket connections per key: slots held (and refreshed) while the connection is open.
  const slots = new WeakMap<WebSocket, Held>();
  const takeSlot = async (ws: WebSocket, owner: string): Promise<void> => {
    const limit = o.maxConnectionsPerKey;
    if (limit === 0 || slots.has(ws)) return;
    const slot = await o.leases.takeSlot(`ws:${owner}`, limit);
    if (!slot) throw new TRPCError({ code: 'TOO_MANY_REQUESTS', message: `Too many WebSocket connections for this key (limit ${limit})` });
    // The connection may have gone while the slot was taken (its 'close' came and went): let it go now.
    if (ws.readyState === ws.CLOSED) {
      await slot.release();
      return;
    }
    slots.set(ws, slot);
    ws.once('close', () => void slot.release());
  };

  // A connection whose credential ends stops counting as signed in at once: its slot goes (a client
  // replacing it opens the new connection before it closes the old one), and its calls are refused
  // (each checks the credential). What streams on it goes on to its end, as a reply whose token
  // expires on any transport does; then it is told to reconnect (tRPC's notification: a stock
  // client opens a new connection, asking connectionParams again, and lets this one go), and if it
  // has not gone within the auth window it is refused as a connection without a credential is.
  const signIns = new WsSignIns({
    tickMs: EXPIRY_TICK_MS,
    ownerOf: (credential) => o.credentials.ownerOf(credential),
    ended: (ws, why) => {
      const slot = slots.get(ws);
      slots.delete(ws);
      void slot?.release();
      authWindow.signedOut(ws);
      logger.info({ transport: 'ws', why }, 'websocket credential ended');
      handler.afterStreams(ws, () => {
        handler.notifyReconnect(ws);
        const refuse = setTimeout(
          () => handler.refuse(ws, new TRPCError({ code: 'UNAUTHORIZED', message: ERROR_MESSAGES.unauthorized }), POLICY_VIOLATION),
          o.authTimeoutMs,
        );
        ws.once('close', () => clearTimeout(refuse));
      });
    },
  });

  const handler = createTrpcWsHandler({
    router: o.router,
    createContext: async ({ ws, connectionParams, sink }): Promise<TRPCContext> => {
      const credential = credentialFromParams(connectionParams);
      const revision = signIns.revision;
      const identity = await authWindow.check(ws, () => identityOf(o.credentials, credential));
      if (identity) {
        await takeSlot(ws, identity.owner);
        // With no credentials required, nothing ends.
        if (o.credentials.required) signIns.watch(ws, credential, identity, revision);
      }
      return {
        chat: o.chat,
        credential,
        transport: 'trpc-ws',
        metrics,
        sink,
        // An answer goes out as the call returns: the turn after, it is queued, and taken once the
        // reader has room again (a reader that stops taking it is cut by the keep-alive).
        answerTaken: () => nextTurn().then(() => sink.caughtUp()),
      };
    },
    // After the upgrade, the request's socket is the connection: its 'drain' is the WebSocket's.
    sinkFor: (ws, socket) =>
      createSink({
        buffered: () => ws.bufferedAmount,
        drains: socket,
        cut: () => ws.terminate(),
        highWaterBytes: o.highWaterBytes,
        sendTimeoutMs: o.sendTimeoutMs,
      }),
    maxBatch: o.maxBatch,
    maxSubscriptions: o.maxSubscriptions,
    // Half-open peers: a client that does not answer a ping within the wait is terminated.
    keepAlive: { pingMs: o.pingMs, pongWaitMs: o.pongWaitMs },
    onError: o.onError,
  });

  const authWindow = createWsAuthWindow({
    required: o.credentials.required,
    timeoutMs: o.authTimeoutMs,
    metrics,
    refuse: (ws, message) => handler.refuse(ws, new TRPCError({ code: 'UNAUTHORIZED', message }), POLICY_VIOLATION),
  });

  wss.on('connection', (socket, req: IncomingMessage) => {
    const openedAt = performance.now();
    const ip = o.clientIpOf(req);
    authWindow.track(socket);
    socket.on('error', (error) => logger.debug({ err: error }, 'websocket error'));
    handler.handleConnection(socket, req);
    socket.once('close', (code) => {
      logger.info({ transport: 'ws', code, durationMs: Math.round(performance.now() - openedAt), clientIp: ip }, 'websocket closed');
    });
  });

  return {
    handleUpgrade: (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req)),
    notifyReconnect: () =>
      wss.clients.forEach((client) => {
        // A connection told to go (a drain) gives up its place in MAX_WS_CONNECTIONS_PER_KEY: its
        // client opens the replacement first, and lets it go once the replacement is open.
        const slot = slots.get(client);
        slots.delete(client);
        void slot?.release();
        handler.notifyReconnect(client);
      }),
    recheckCredentials: () => signIns.recheck(),
    close: async () => {
      for (const client of wss.clients) client.close(1012, 'server restarting');
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
    terminate: () => {
      for (const client of wss.clients) client.terminate();
    },
  };
}
