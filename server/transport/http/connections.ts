import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { Metrics } from '../../observability/metrics.ts';

export interface HttpConnections {
  /** A request's response is under way on its socket (a connection-level error must not write into it). */
  responding(req: IncomingMessage, res: ServerResponse): void;
  /**
   * Runs a request's handler once the requests before it on its socket are answered. HTTP/1.1
   * answers pipelined requests in order, so one started early would only hold its answer (or run a
   * reply nobody reads yet); a socket with more than PIPELINE_MAX waiting is cut off.
   */
  serve(req: IncomingMessage, res: ServerResponse, handle: () => void): void;
  /** The socket asked for an upgrade: from now on the WebSocket server counts it. */
  upgraded(socket: Duplex): void;
  /** Connections open now, WebSockets included. */
  count(): Promise<number>;
}

/**
 * The server's connections below the requests: each counted once (as http until it is upgraded),
 * and malformed or too-slow requests, which never reach a handler, answered (unless a response has
 * started) and dropped.
 */
export interface StalledAnswers {
  /** An answer whose bytes stay queued above this... */
  readonly highWaterBytes: number;
  /** ...for this long, without the reader taking any, loses its connection (SEND_TIMEOUT_MS). */
  readonly sendTimeoutMs: number;
}

export function watchConnections(server: Server, metrics: Metrics, logger: Logger, stalled: StalledAnswers): HttpConnections {
  const inFlight = new WeakMap<Duplex, ServerResponse>();
  const httpConnections = new WeakSet<Duplex>();
  /** Each socket's requests: one being answered, the ones pipelined after it waiting their turn. */
  const lines = new WeakMap<Duplex, { busy: boolean; waiting: Array<() => void> }>();
  const answers = new AnswerWatch(stalled);
  server.once('close', () => answers.stop());
  server.on('drop', () => metrics.rejected('too_many_connections'));
  server.on('connection', (socket) => {
    metrics.connectionOpened('http');
    httpConnections.add(socket);
    socket.once('close', () => httpConnections.delete(socket) && metrics.connectionClosed('http'));
  });
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    logger.debug({ code: error.code, reason: (error as { reason?: string }).reason }, 'malformed request');
    const timedOut = error.code === 'ERR_HTTP_REQUEST_TIMEOUT';
    if (timedOut) metrics.rejected('request_timeout');
    // A kept-alive connection's last response may be over: then the new request can be answered.
    const res = inFlight.get(socket);
    const answering = res !== undefined && res.headersSent && !res.writableFinished;
    if (socket.writable && error.code !== 'ECONNRESET' && !answering) {
      socket.end(`HTTP/1.1 ${statusLine(error.code)}\r\nConnection: close\r\n\r\n`);
    } else socket.destroy();
  });
  return {
    serve: (req, res, handle) => {
      const socket = req.socket;
      let line = lines.get(socket);
      if (!line) lines.set(socket, (line = { busy: false, waiting: [] }));
      const queue = line;
      const start = (): void => {
        queue.busy = true;
        answers.watch(res);
        res.once('close', () => {
          answers.forget(res);
          queue.busy = false;
          queue.waiting.shift()?.();
        });
        handle();
      };
      if (!queue.busy) start();
      else if (queue.waiting.length < PIPELINE_MAX) queue.waiting.push(start);
      else socket.destroy();
    },
    responding: (req, res) => {
      inFlight.set(req.socket, res);
      res.once('finish', () => {
        if (!req.complete) limitUnread(req);
      });
    },
    upgraded: (socket) => {
      if (httpConnections.delete(socket)) metrics.connectionClosed('http');
    },
    count: () => new Promise((resolve) => server.getConnections((error, count) => resolve(error ? 0 : count))),
  };
}

/**
 * Every answer under way, looked at a few times per send timeout: one whose reader has taken none
 * of what is queued above the high-water mark for the send timeout is cut off. Streams stop writing
 * at the mark by themselves (the drain loop); a JSON answer (a page of history, a tRPC batch) is
 * written whole, and without this a client that never reads would hold it for as long as it
 * keeps its connection. One timer for all of them, not one per answer.
 */
class AnswerWatch {
  readonly #o: StalledAnswers;
  /** Each answer's queued bytes at the last look, and since when they have not gone down. */
  readonly #answers = new Map<ServerResponse, { queued: number; unsent: number; since: number }>();
  #timer: NodeJS.Timeout | undefined;

  constructor(options: StalledAnswers) {
    this.#o = options;
  }

  watch(res: ServerResponse): void {
    this.#answers.set(res, { queued: 0, unsent: 0, since: performance.now() });
    this.#timer ??= setInterval(() => this.#look(), Math.max(25, Math.floor(this.#o.sendTimeoutMs / 4))).unref();
  }

  forget(res: ServerResponse): void {
    this.#answers.delete(res);
    if (this.#answers.size === 0) this.stop();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #look(): void {
    const now = performance.now();
    for (const [res, seen] of this.#answers) {
      const queued = res.writableLength;
      // A write is counted whole in writableLength until its last byte is out: a big answer read at
      // a steady pace shows progress only in what libuv has left of it.
      const unsent = (res.socket as { _handle?: { writeQueueSize?: number } } | null)?._handle?.writeQueueSize ?? queued;
      if (queued <= this.#o.highWaterBytes || queued < seen.queued || unsent < seen.unsent) {
        seen.since = now;
      } else if (now - seen.since >= this.#o.sendTimeoutMs) {
        this.#answers.delete(res);
        res.destroy();
        continue;
      }
      seen.queued = queued;
      seen.unsent = unsent;
    }
  }
}

/** Requests one socket may have waiting behind the one being answered (a browser pipelines none). */
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
