import { TRPCClientError, type TRPCLink } from '@trpc/client';
import { observable, type Observer, type Unsubscribable } from '@trpc/server/observable';
import superjson from 'superjson';
import type { AppRouter } from '../shared/app-router.ts';
import { statusRefusal } from './refusal.ts';

// A server that refuses a WebSocket connection (past MAX_WS_CONNECTIONS_PER_KEY, say) says why in
// an error with `id: null`, then closes it; tRPC's wsClient reads no call's answer in it, and
// reconnects, so the calls waiting on the connection never learn why (a query pends, a stream is
// told the server could not be reached). The calls sent and not answered yet are failed with that
// error, typed as every other refusal (`data.sluiceCode`).

type AnyObserver = Observer<never, TRPCClientError<AppRouter>>;

export class ConnectionRefusals {
  readonly #waiting = new Set<AnyObserver>();
  /** Sockets that have answered a call: an `id: null` error on them is about a frame, not the connection. */
  readonly #accepted = new WeakSet<object>();
  /** The last refusal, until a connection is accepted: what a call that fails for want of a connection meanwhile is told. */
  #refusal: TRPCClientError<AppRouter> | undefined;

  /** Reads what a socket receives (its `message` listener). */
  observe(socket: object, data: unknown): void {
    if (this.#accepted.has(socket) || typeof data !== 'string' || data === 'PING' || data === 'PONG') return;
    let message: { id?: unknown; result?: unknown; error?: unknown };
    try {
      message = JSON.parse(data) as typeof message;
    } catch {
      return;
    }
    if (message === null || typeof message !== 'object') return;
    if ('result' in message) {
      this.#accepted.add(socket);
      this.#refusal = undefined;
      return;
    }
    if (message.id !== null || message.error === undefined) return;
    let shape: unknown;
    try {
      shape = superjson.deserialize(message.error as Parameters<typeof superjson.deserialize>[0]);
    } catch {
      return;
    }
    this.#refuse(TRPCClientError.from<AppRouter>({ error: shape } as never));
  }

  /**
   * Reads a socket's `error` event: an upgrade the server answered 403 (a host or page its origin
   * policy refuses) or 404 (no WebSocket there) is a refusal too, which tRPC would retry for ever.
   * Only where the WebSocket says the status (the `ws` package in Node: "Unexpected server
   * response: 403"); a browser tells a page nothing of it.
   */
  observeError(event: unknown): void {
    const message = (event as { message?: unknown } | null)?.message;
    const status = typeof message === 'string' ? /^Unexpected server response: (\d{3})$/.exec(message)?.[1] : undefined;
    const error = status === undefined ? undefined : statusRefusal(status, 'WebSocket connection');
    if (error) this.#refuse(error);
  }

  #refuse(error: TRPCClientError<AppRouter>): void {
    this.#refusal = error;
    for (const observer of [...this.#waiting]) observer.error(error);
    this.#waiting.clear();
  }

  /** Fails the calls through `ws` when their connection is refused. */
  link(ws: TRPCLink<AppRouter>): TRPCLink<AppRouter> {
    return (runtime) => {
      const viaWs = ws(runtime);
      return ({ op, next }) =>
        observable((observer) => {
          const waiting = observer as unknown as AnyObserver;
          this.#waiting.add(waiting);
          const inner: Unsubscribable = viaWs({ op, next }).subscribe({
            next: (value) => {
              // A call answered once was accepted: a later refusal (of a reconnection, on another
              // socket) is not about it; a subscription resumes, or ends, by its own events. (A
              // subscription's first value is wsLink's own word on the connection's state: no answer.)
              if ((value.result as { type?: string }).type !== 'state') this.#waiting.delete(waiting);
              observer.next(value);
            },
            error: (error) => {
              this.#waiting.delete(waiting);
              // A failure of the client's own (no server data: the socket closed under the call)
              // while the connection stands refused is that refusal.
              observer.error(error.data === undefined && this.#refusal ? this.#refusal : error);
            },
            complete: () => {
              this.#waiting.delete(waiting);
              observer.complete();
            },
          });
          return () => {
            this.#waiting.delete(waiting);
            inner.unsubscribe();
          };
        });
    };
  }
}
