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
  check(ws: WebSocket, ownerOf: () => Promise<string | undefined>): Promise<string | undefined>;
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
  const refuse = (ws: WebSocket): void => {
    pending.delete(ws);
    o.refuse(ws, `No valid credential within ${o.timeoutMs} ms`);
  };
  return {
    track(ws) {
      let kind: WsConnectionKind = o.required ? 'ws_unauthenticated' : 'ws';
      o.metrics.connectionOpened(kind);
      ws.once('close', () => o.metrics.connectionClosed(kind));
      if (kind === 'ws') return;
      const state: Pending = {
        checks: 0,
        expired: false,
        timer: setTimeout(() => {
          if (state.checks > 0) state.expired = true;
          else refuse(ws);
        }, o.timeoutMs),
        settle: () => {
          clearTimeout(state.timer);
          if (ws.readyState !== ws.OPEN) return;
          o.metrics.connectionClosed(kind);
          kind = 'ws';
          o.metrics.connectionOpened(kind);
        },
      };
      ws.once('close', () => clearTimeout(state.timer));
      pending.set(ws, state);
    },
    async check(ws, ownerOf) {
      const state = pending.get(ws);
      if (!state) return ownerOf();
      state.checks++;
      let owner: string | undefined;
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
  };
}
