import { TRPCClientError, type TRPCLink } from '@trpc/client';
import { observable, type Unsubscribable } from '@trpc/server/observable';
import type { AppRouter } from '../shared/app-router.ts';
import { clientRefusal } from './refusal.ts';

// Over WebSocket the credential goes with the connection, not with each call: in an app whose user
// signs out, or whose account switcher signs another in, a client made once (as the README shows)
// would go on calling as the previous user, reading and writing that user's sessions. Before each
// call the client asks for the credential, as HTTP and SSE do with each request, and a connection
// opened for someone else is replaced first.

/**
 * Claims that change when a provider refreshes a token of the same user: the standard ones, and
 * those of common providers (Clerk's `fva`, Microsoft Entra's `aio`, `uti`, `rh`, Cognito's
 * `event_id`, `origin_jti`). One not here costs a reconnection at a refresh, never another user's call.
 */
const REFRESHED = new Set(['iat', 'exp', 'nbf', 'jti', 'auth_time', 'nonce', 'at_hash', 'c_hash', 'fva', 'aio', 'uti', 'rh', 'event_id', 'origin_jti']);

/**
 * Who a token names: a JWT's claims but those a refresh changes (read, not verified: the server
 * verifies; all of them, since the server may name the user by any claim, AUTH_JWT_OWNER_CLAIM), so
 * that a refreshed token of the same user keeps the connection; any other token stands for itself.
 */
export function identityOf(token: string | undefined): string {
  if (!token) return '';
  const parts = token.split('.');
  if (parts.length === 3) {
    try {
      const base64 = parts[1]!.replaceAll('-', '+').replaceAll('_', '/');
      const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
      const claims = JSON.parse(new TextDecoder().decode(bytes)) as unknown;
      if (claims !== null && typeof claims === 'object' && !Array.isArray(claims)) {
        const kept = Object.entries(claims).filter(([name]) => !REFRESHED.has(name));
        kept.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
        return `jwt\u0000${JSON.stringify(kept)}`;
      }
    } catch {
      // Not a JWT we can read: the token itself.
    }
  }
  return `token\u0000${token}`;
}

export interface ConnectionIdentity {
  /** The credential of the user signed in now (connection params), and the order it was asked for in. */
  readonly current: () => { readonly params: Promise<Record<string, string>>; readonly order: number };
  /** Whom the open connection was given the credential of, asked for when; undefined while none is open. */
  readonly openedFor: () => { readonly identity: string; readonly order: number } | undefined;
  /** Replaces the open connection by one opened with a credential asked for anew. */
  readonly renew: () => void;
  /**
   * Resolves once the connection opening now (or next) is open, its credential shown (or the client
   * closes); `cancel` lets go of the wait (a call aborted meanwhile).
   */
  readonly nextOpen: () => { readonly opened: Promise<void>; readonly cancel: () => void };
}

/** Sends each call over a connection opened for the user signed in now; getToken's failure fails the call. */
export function sameIdentity(ws: TRPCLink<AppRouter>, c: ConnectionIdentity): TRPCLink<AppRouter> {
  return (runtime) => {
    const viaWs = ws(runtime);
    return ({ op, next }) =>
      observable((observer) => {
        let inner: Unsubscribable | undefined;
        let stopped = false;
        let waiting: (() => void) | undefined;
        const stop = (): void => {
          stopped = true;
          waiting?.();
          inner?.unsubscribe();
        };
        // As wsLink ends a call whose signal aborts: at once, whatever it waits for.
        const onAbort = (): void => {
          if (stopped) return;
          stop();
          observer.complete();
        };
        if (op.signal?.aborted) {
          onAbort();
          return () => undefined;
        }
        op.signal?.addEventListener('abort', onAbort, { once: true });
        const send = async (): Promise<void> => {
          const credential = c.current();
          const wanted = identityOf((await credential.params).token);
          // A connection opened for someone else (a credential asked for before the switch) is
          // replaced, and the call waits until one opened for the user signed in now is open; one
          // still opening is looked at once it is open. Past a few looks (a server that keeps
          // refusing), the call goes to tRPC, which holds it for the next connection.
          for (let look = 0; look < 4 && !stopped; look++) {
            const opened = c.openedFor();
            if (opened?.identity === wanted) break;
            // Opened with a credential asked for after this call's: the user changed since the call
            // was made (a read of the previous user's, answered late). It goes nowhere; the
            // connection of the user signed in now stays.
            if (opened !== undefined && opened.order > credential.order) {
              // Not `unauthorized`: that would have the client renew the connection and try again.
              throw clientRefusal('cancelled', 'The signed-in user changed while this call was made');
            }
            if (opened !== undefined) c.renew();
            const wait = c.nextOpen();
            waiting = wait.cancel;
            await wait.opened;
            waiting = undefined;
          }
          if (!stopped) inner = viaWs({ op, next }).subscribe(observer);
        };
        send().catch((error: unknown) => {
          if (stopped) return;
          observer.error(error instanceof TRPCClientError ? error : TRPCClientError.from(error instanceof Error ? error : new Error(String(error))));
        });
        return () => {
          op.signal?.removeEventListener('abort', onAbort);
          stop();
        };
      });
  };
}
