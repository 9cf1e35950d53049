import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { Metrics } from '../../observability/metrics.ts';
import { answerAndClose } from './raw-answer.ts';
import { StalledReaders } from './stalled-readers.ts';

export interface HttpConnections {
  /**
   * Runs a request's handler, its response counted as under way on its socket (a connection-level
   * error must not write into it), unless the socket already has PIPELINE_MAX requests under way
   * (a client pipelining them, each maybe a reply): then the socket is cut off.
   */
  serve(req: IncomingMessage, res: ServerResponse, handle: () => void): void;
  /** The socket asked for an upgrade: from now on the WebSocket server counts it. */
  upgraded(socket: Duplex): void;
  /** Connections open now, WebSockets included. */
  count(): Promise<number>;
  /**
   * The server is draining: every connection goes once its response is over (answers begun from
   * now on say `Connection: close`; one under way ends its socket as it ends), and idle ones go now.
   * A client's next call then opens a new connection (to another instance, behind a balancer)
   * instead of meeting this one as it closes.
   */
  closeAfterResponses(): void;
}

/**
 * The server's connections below the requests: each counted once (as http until it is upgraded),
 * and malformed or too-slow requests, which never reach a handler, answered (unless a response has
 * started) and dropped.
 */
export function watchConnections(server: Server, metrics: Metrics, logger: Logger, sendTimeoutMs: number): HttpConnections {
  /** Each socket's responses under way (pipelined requests are answered in order, one after another). */
  const underWay = new WeakMap<Duplex, Set<ServerResponse>>();
  let draining = false;
  const lastOnItsConnection = (res: ServerResponse): void => {
    if (!res.headersSent) {
      res.shouldKeepAlive = false;
      return;
    }
    // Its headers promised keep-alive: the socket is ended right after its last byte instead.
    const socket = res.socket;
    res.once('finish', () => socket?.end());
  };
  /** Open connections not upgraded (each leaves on close or upgrade), for the drain to go through. */
  const httpConnections = new Set<Duplex>();
  /** Every open connection, upgraded ones too: a WebSocket's reader may stop taking an answer as well. */
  const allConnections = new Set<Duplex>();
  const stalled = new StalledReaders({
    sockets: allConnections,
    sendTimeoutMs,
    onCut: (socket) => logger.debug({ remote: (socket as Partial<Socket>).remoteAddress }, 'reader took nothing for SEND_TIMEOUT_MS: connection cut'),
  });
  server.once('close', () => stalled.stop());
  server.on('drop', () => metrics.rejected('too_many_connections'));
  server.on('connection', (socket) => {
    // A connection given back to the parser (see ignored-upgrade.ts) is counted already.
    if (allConnections.has(socket)) return;
    metrics.connectionOpened('http');
    httpConnections.add(socket);
    allConnections.add(socket);
    stalled.wake();
    socket.once('close', () => {
      allConnections.delete(socket);
      if (httpConnections.delete(socket)) metrics.connectionClosed('http');
    });
  });
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    logger.debug({ code: error.code, reason: (error as { reason?: string }).reason }, 'malformed request');
    const timedOut = error.code === 'ERR_HTTP_REQUEST_TIMEOUT';
    if (timedOut) metrics.rejected('request_timeout');
    // A kept-alive connection's earlier responses may be over: then the new request can be answered.
    // One that has started and not finished (a stream) must not get an answer written into it.
    let answering = false;
    for (const res of underWay.get(socket) ?? []) if (res.headersSent && !res.writableFinished) answering = true;
    if (socket.writable && error.code !== 'ECONNRESET' && !answering) {
      answerAndClose(socket, `HTTP/1.1 ${statusLine(error.code)}\r\nConnection: close\r\n\r\n`);
    } else socket.destroy();
  });
  return {
    serve: (req, res, handle) => {
      const socket = req.socket;
      let responses = underWay.get(socket);
      if (!responses) underWay.set(socket, (responses = new Set()));
      if (responses.size >= PIPELINE_MAX) {
        socket.destroy();
        return;
      }
      const mine = responses;
      mine.add(res);
      if (draining) lastOnItsConnection(res);
      res.once('close', () => mine.delete(res));
      res.once('finish', () => {
        if (!req.complete) limitUnread(req);
      });
      handle();
    },
    upgraded: (socket) => {
      if (httpConnections.delete(socket)) metrics.connectionClosed('http');
    },
    count: () => new Promise((resolve) => server.getConnections((error, count) => resolve(error ? 0 : count))),
    closeAfterResponses: () => {
      if (draining) return;
      draining = true;
      for (const socket of httpConnections) for (const res of underWay.get(socket) ?? []) lastOnItsConnection(res);
      server.closeIdleConnections();
    },
  };
}

/** Requests one socket may have under way at once (a browser pipelines none; tRPC batches in one request). */
const PIPELINE_MAX = 16;

/**
 * What a client still sending a body nobody reads (it was refused: too large, no such route, no
 * credential) may send on: Node reads such a body to its end to keep the connection, however long
 * it is and at whatever rate it comes. A body that ends within these bounds (most refused bodies are
 * in flight, a few bytes) keeps its connection; one that does not loses it.
 */
const UNREAD_BODY_GRACE_MS = 1_000;
const UNREAD_BODY_MAX_BYTES = 1024 * 1024;

function limitUnread(req: IncomingMessage): void {
  const socket = req.socket;
  if (socket.destroyed) return;
  let bytes = 0;
  const cut = (): void => void socket.destroy();
  const timer = setTimeout(cut, UNREAD_BODY_GRACE_MS).unref();
  // Node is discarding the body by now (its own 'finish' handler ran first); this only counts it.
  const onData = (chunk: Buffer): void => {
    bytes += chunk.length;
    if (bytes > UNREAD_BODY_MAX_BYTES) cut();
  };
  const done = (): void => {
    clearTimeout(timer);
    req.off('data', onData);
    req.off('end', done);
    // The socket outlives the request (keep-alive): a listener left on it would be one per request.
    socket.off('close', done);
  };
  req.on('data', onData);
  req.once('end', done);
  socket.once('close', done);
}

/** The answer to a request that never reached a handler, as Node's own handler gives it. */
function statusLine(code: string | undefined): string {
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return '408 Request Timeout';
  if (code === 'HPE_HEADER_OVERFLOW') return '431 Request Header Fields Too Large';
  return '400 Bad Request';
}
