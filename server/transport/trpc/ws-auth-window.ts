import type { WebSocket } from 'ws';

export type WsConnectionKind = 'ws' | 'ws_unauthenticated';

export interface WsAuthWindowOptions {
  /** Credentials are required (keys or tokens are configured). */
  readonly required: boolean;
  /** How long a connection may stay without showing a valid credential. */
  readonly timeoutMs: number;
  readonly metrics: { connectionOpened(kind: WsConnectionKind): void; connectionClosed(kind: WsConnectionKind): void };
  /** Refuses a connection whose window has closed (tells it why, then closes it). */
  readonly refuse: (ws: WebSocket, message: string) => void;
}

export interface WsAuthWindow {
  /** Counts a new connection and, when a credential is required, opens its window. */
  track(ws: WebSocket): void;
  /** The connection has shown a valid credential: counted as `ws`, its window closed. */
  authenticated(ws: WebSocket): void;
}

/**
 * The time a WebSocket has to show its credential. Until it does it is counted as
 * `ws_unauthenticated` (its calls are refused one by one by the procedures); one that has not within
 * the timeout is refused. With no credential required every connection is `ws` from the start.
 */
export function createWsAuthWindow(o: WsAuthWindowOptions): WsAuthWindow {
  if (!Number.isInteger(o.timeoutMs) || o.timeoutMs < 1) throw new RangeError(`ws auth window: timeoutMs must be a positive integer, got ${o.timeoutMs}`);
  const pending = new WeakMap<WebSocket, () => void>();
  return {
    track(ws) {
      let kind: WsConnectionKind = o.required ? 'ws_unauthenticated' : 'ws';
      o.metrics.connectionOpened(kind);
      ws.once('close', () => o.metrics.connectionClosed(kind));
      if (kind === 'ws') return;
      const timer = setTimeout(() => o.refuse(ws, `No valid credential within ${o.timeoutMs} ms`), o.timeoutMs);
      ws.once('close', () => clearTimeout(timer));
      pending.set(ws, () => {
        clearTimeout(timer);
        if (ws.readyState !== ws.OPEN) return;
        o.metrics.connectionClosed(kind);
        kind = 'ws';
        o.metrics.connectionOpened(kind);
      });
    },
    authenticated(ws) {
      const settle = pending.get(ws);
      pending.delete(ws);
      settle?.();
    },
  };
}
