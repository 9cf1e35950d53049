import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

export interface StalledReadersOptions {
  /** The connections to look at, WebSockets included (each leaves the set when it closes). */
  readonly sockets: ReadonlySet<Duplex>;
  /** A reader that takes nothing of what is queued for it for this long is cut off (SEND_TIMEOUT_MS). */
  readonly sendTimeoutMs: number;
  /** Told of each connection cut off. */
  readonly onCut: (socket: Duplex) => void;
}

interface Stuck {
  unsent: number;
  /** Bytes the response had written by then: a stream writes only once its reader has made room. */
  written: number;
  since: number;
}

/**
 * The send timeout for every connection, HTTP or WebSocket, not only streams (whose sinks wait for
 * room and cut a reader that stays full): an answer written whole, a long history or tRPC's answer to a batch, is
 * megabytes queued at once, and a reader that takes none of it would hold it, and its connection,
 * for good (Node's keep-alive timer starts only once a response is out). One timer looks at every
 * connection a few times per timeout; a connection whose queue has neither shrunk nor been written
 * to for the timeout is cut. A slow reader is not: anything it takes restarts its time (a stream's
 * next write, which its sink allows only once the reader has made room, counts as taken).
 */
export class StalledReaders {
  readonly #o: StalledReadersOptions;
  readonly #stuck = new Map<Duplex, Stuck>();
  #timer: NodeJS.Timeout | undefined;

  constructor(options: StalledReadersOptions) {
    if (!Number.isInteger(options.sendTimeoutMs) || options.sendTimeoutMs < 1) {
      throw new RangeError(`stalled readers: sendTimeoutMs must be a positive integer, got ${options.sendTimeoutMs}`);
    }
    this.#o = options;
  }

  /** A connection came: the timer runs while there are any. */
  wake(): void {
    this.#timer ??= setInterval(() => this.#look(), Math.max(10, Math.floor(this.#o.sendTimeoutMs / 4))).unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#stuck.clear();
  }

  #look(): void {
    const { sockets, sendTimeoutMs, onCut } = this.#o;
    if (sockets.size === 0) {
      this.stop();
      return;
    }
    for (const socket of this.#stuck.keys()) if (!sockets.has(socket)) this.#stuck.delete(socket);
    const now = performance.now();
    for (const socket of sockets) {
      const unsent = unsentBytes(socket);
      const stuck = this.#stuck.get(socket);
      if (unsent === 0 || socket.destroyed) {
        if (stuck) this.#stuck.delete(socket);
        continue;
      }
      const written = (socket as Partial<Socket>).bytesWritten ?? 0;
      if (!stuck) {
        this.#stuck.set(socket, { unsent, written, since: now });
      } else if (unsent < stuck.unsent || written > stuck.written) {
        stuck.unsent = unsent;
        stuck.written = written;
        stuck.since = now;
      } else if (now - stuck.since >= sendTimeoutMs) {
        this.#stuck.delete(socket);
        socket.destroy();
        onCut(socket);
      }
    }
  }
}

/**
 * What is queued on a socket and not yet taken by the kernel: Node's queue, whose first write counts
 * whole until it is all out, and libuv's part of that write, which shrinks as it goes out piece by
 * piece (the one sign that a reader takes a large write slowly rather than not at all).
 */
function unsentBytes(socket: Duplex): number {
  const handle = (socket as { _handle?: { writeQueueSize?: unknown } | null })._handle;
  const inLibuv = typeof handle?.writeQueueSize === 'number' ? handle.writeQueueSize : 0;
  return socket.writableLength + inLibuv;
}
