import { TRPCClientError, type TRPCLink } from '@trpc/client';
import { observable, type Unsubscribable } from '@trpc/server/observable';
import type { AppRouter } from '../shared/app-router.ts';

// Over WebSocket the credential goes with the connection, not with each call: in an app whose user
// signs out, or whose account switcher signs another in, a client made once (as the README shows)
// would go on calling as the previous user, reading and writing that user's sessions. Before each
// call the client asks for the credential, as HTTP and SSE do with each request, and a connection
// opened for someone else is replaced first.

/**
 * Who a token names: a JWT's issuer and subject (read, not verified: the server verifies), so that
 * a refreshed token of the same user keeps the connection; any other token stands for itself.
 */
export function identityOf(token: string | undefined): string {
  if (!token) return '';
  const parts = token.split('.');
  if (parts.length === 3) {
    try {
      const base64 = parts[1]!.replaceAll('-', '+').replaceAll('_', '/');
      const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
      const claims = JSON.parse(new TextDecoder().decode(bytes)) as { iss?: unknown; sub?: unknown };
      if (typeof claims.sub === 'string') return `jwt\u0000${typeof claims.iss === 'string' ? claims.iss : ''}\u0000${claims.sub}`;
    } catch {
      // Not a JWT we can read: the token itself.
    }
  }
  return `token\u0000${token}`;
}

export interface ConnectionIdentity {
  /** The credential of the user signed in now (connection params). */
  readonly current: () => Promise<Record<string, string>>;
  /** Whom the open connection was given the credential of; undefined while none is open. */
  readonly openedFor: () => string | undefined;
  /** Replaces the open connection by one opened with a credential asked for anew. */
  readonly renew: () => void;
  /** Resolves when a connection opens next (or the client closes). */
  readonly nextOpen: () => Promise<void>;
}

/** Sends each call over a connection opened for the user signed in now; getToken's failure fails the call. */
export function sameIdentity(ws: TRPCLink<AppRouter>, c: ConnectionIdentity): TRPCLink<AppRouter> {
  return (runtime) => {
    const viaWs = ws(runtime);
    return ({ op, next }) =>
      observable((observer) => {
        let inner: Unsubscribable | undefined;
        let stopped = false;
        const send = async (): Promise<void> => {
          const wanted = identityOf((await c.current()).token);
          // A connection replaced for another user opens before the call goes out; one that opens
          // for someone else again (a credential asked for before the switch) is replaced once more.
          for (let look = 0; look < 3 && !stopped; look++) {
            const opened = c.openedFor();
            if (opened === wanted) break;
            if (opened !== undefined) c.renew();
            await c.nextOpen();
          }
          if (!stopped) inner = viaWs({ op, next }).subscribe(observer);
        };
        send().catch((error: unknown) => {
          if (!stopped) observer.error(TRPCClientError.from(error instanceof Error ? error : new Error(String(error))));
        });
        return () => {
          stopped = true;
          inner?.unsubscribe();
        };
      });
  };
}
