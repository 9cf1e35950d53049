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
  /**
   * Checks the credential a connection showed: an owner closes its window (the connection counts
   * as `ws`). The window does not end while a check is under way: a slow identity provider is
   * answered as such (the check's own error), not as a missing credential; it ends when a check
   * that found no owner settles after the timeout. The wait is the check's own, which is bounded.
   */
  check<T>(ws: WebSocket, ownerOf: () => Promise<T | undefined>): Promise<T | undefined>;
  /** A connection whose credential ended (expired, revoked) is counted as `ws_unauthenticated` again. */
  signedOut(ws: WebSocket): void;
}

interface Pending {
  /** Checks under way. */
  checks: number;
  /** The timeout has passed (during a check). */
  expired: boolean;
  readonly settle: () => void;
  readonly timer: NodeJS.Timeout;
}

/**
 * The time a WebSocket has to show its credential. Until it does it is counted as
 * `ws_unauthenticated` (its calls are refused one by one by the procedures); one that has not within
 * the timeout is refused. With no credential required every connection is `ws` from the start.
 */
export function createWsAuthWindow(o: WsAuthWindowOptions): WsAuthWindow {
  if (!Number.isInteger(o.timeoutMs) || o.timeoutMs < 1) throw new RangeError(`ws auth window: timeoutMs must be a positive integer, got ${o.timeoutMs}`);
  const pending = new WeakMap<WebSocket, Pending>();
  // How each connection is counted now (a box, which its 'close' reads).
  const kinds = new WeakMap<WebSocket, { kind: WsConnectionKind }>();
  const recount = (ws: WebSocket, from: WsConnectionKind, to: WsConnectionKind): void => {
    const counted = kinds.get(ws);
    if (!counted || counted.kind !== from || ws.readyState !== ws.OPEN) return;
    o.metrics.connectionClosed(from);
    counted.kind = to;
    o.metrics.connectionOpened(to);
  };
  const refuse = (ws: WebSocket): void => {
    pending.delete(ws);
    o.refuse(ws, `No valid credential within ${o.timeoutMs} ms`);
  };
  return {
    track(ws) {
      const counted: { kind: WsConnectionKind } = { kind: o.required ? 'ws_unauthenticated' : 'ws' };
      kinds.set(ws, counted);
      o.metrics.connectionOpened(counted.kind);
      ws.once('close', () => o.metrics.connectionClosed(counted.kind));
      if (counted.kind === 'ws') return;
      const state: Pending = {
        checks: 0,
        expired: false,
        timer: setTimeout(() => {
          if (state.checks > 0) state.expired = true;
          else refuse(ws);
        }, o.timeoutMs),
        settle: () => {
          clearTimeout(state.timer);
          recount(ws, 'ws_unauthenticated', 'ws');
        },
      };
      ws.once('close', () => clearTimeout(state.timer));
      pending.set(ws, state);
    },
    async check(ws, ownerOf) {
      const state = pending.get(ws);
      if (!state) return ownerOf();
      state.checks++;
      let owner: Awaited<ReturnType<typeof ownerOf>>;
      try {
        owner = await ownerOf();
      } finally {
        state.checks--;
      }
      if (owner) {
        pending.delete(ws);
        state.settle();
      } else if (state.expired && state.checks === 0) refuse(ws);
      return owner;
    },
    signedOut(ws) {
      // Only when credentials are required: with none, nothing ends.
      if (o.required) recount(ws, 'ws', 'ws_unauthenticated');
    },
  };
}
