import type { WebSocket } from 'ws';

const OPEN = 1; // WebSocket.OPEN

/** A connection as the keep-alive sees it: when the client last sent anything, and when it was pinged. */
export interface KeptAlive {
  readonly ws: WebSocket;
  /** performance.now() of the client's last message (any, `PONG` included). */
  seenAt: number;
  /** When the unanswered `PING` went out, if one did. */
  pingedAt: number | undefined;
}

export interface WsKeepAliveOptions {
  /** A client quiet for this long is sent `PING`... */
  readonly pingMs: number;
  /** ...and cut off if nothing comes back within this. */
  readonly pongWaitMs: number;
}

/**
 * tRPC's WebSocket keep-alive (what `handleKeepAlive` in `@trpc/server/adapters/ws` does, and the
 * stock wsLink answers): `PING` after `pingMs` without a message from the client, and the
 * connection terminated if nothing comes back within `pongWaitMs`. tRPC's own re-arms two timers,
 * with new closures, on every message of every connection, and holds them for each connection's
 * life; here one timer looks at every connection a few times per wait (so each deadline is met
 * within a quarter of the shorter wait), and a connection costs two numbers.
 */
export class WsKeepAlive {
  readonly #pingMs: number;
  readonly #pongWaitMs: number;
  readonly #peers = new Set<KeptAlive>();
  #timer: NodeJS.Timeout | undefined;

  constructor(options: WsKeepAliveOptions) {
    for (const name of ['pingMs', 'pongWaitMs'] as const) {
      const value = options[name];
      if (!Number.isInteger(value) || value < 1) throw new RangeError(`ws keep-alive: ${name} must be a positive integer, got ${value}`);
    }
    this.#pingMs = options.pingMs;
    this.#pongWaitMs = options.pongWaitMs;
  }

  watch(peer: KeptAlive): void {
    this.#peers.add(peer);
    this.#timer ??= setInterval(() => this.#look(), Math.max(10, Math.floor(Math.min(this.#pingMs, this.#pongWaitMs) / 4))).unref();
  }

  forget(peer: KeptAlive): void {
    this.#peers.delete(peer);
    if (this.#peers.size > 0) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #look(): void {
    const now = performance.now();
    for (const peer of this.#peers) {
      if (peer.pingedAt !== undefined) {
        if (peer.seenAt < peer.pingedAt) {
          if (now - peer.pingedAt >= this.#pongWaitMs) {
            this.forget(peer);
            peer.ws.terminate();
          }
          continue;
        }
        peer.pingedAt = undefined;
      }
      if (now - peer.seenAt >= this.#pingMs && peer.ws.readyState === OPEN) {
        peer.pingedAt = now;
        peer.ws.send('PING');
      }
    }
  }
}
