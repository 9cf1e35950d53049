import {
  createTRPCClient,
  createWSClient,
  httpBatchLink,
  httpSubscriptionLink,
  retryLink,
  splitLink,
  TRPCClientError,
  wsLink,
  type TRPCClient,
  type TRPCLink,
} from '@trpc/client';
import { observable, type Unsubscribable } from '@trpc/server/observable';
import superjson from 'superjson';
import type { AppRouter } from '../shared/app-router.ts';
import { sseRefusals } from './sse-refusals.ts';
import { sseUrlBound } from './sse-url-bound.ts';
import { within } from '../shared/within.ts';
import { withBatchLimit } from './ws-batches.ts';
import { identityOf, sameIdentity } from './ws-identity.ts';
import { ConnectionRefusals } from './ws-refusals.ts';
import { resumeRefusedStreams } from './resume-refused.ts';
import { deliveredTries } from './delivered.ts';

export type Transport = 'ws' | 'sse' | 'auto';
export type ChatClient = TRPCClient<AppRouter>;

type EventSourceClass = new (url: string, init?: { withCredentials?: boolean; fetch?: typeof fetch }) => EventSource;

/** A user's token as the app has it now: called at each (re)connect and HTTP request, so a refreshed one is picked up. */
export type GetToken = () => string | null | undefined | Promise<string | null | undefined>;

export interface ChatClientOptions {
  /** The server's base URL, such as `http://localhost:8000`. */
  readonly url: string;
  /** `'auto'` (default): WebSocket, falling back to SSE when it cannot connect within `wsConnectTimeoutMs`. */
  readonly transport?: Transport;
  /**
   * An API key (a secret: for servers and scripts, never in a web page). Sent as
   * `Authorization: Bearer` over HTTP and as `connectionParams: { apiKey }` over WebSocket and SSE.
   */
  readonly apiKey?: string;
  /**
   * The signed-in user's token (a JWT from your identity provider), for apps whose users sign in.
   * Called at each (re)connect and HTTP request; sent as `Authorization: Bearer` over HTTP and as
   * `connectionParams: { token }` over WebSocket and SSE (EventSource cannot send headers). A call
   * refused as `UNAUTHORIZED` (the token expired) is retried once with a fresh token, over a new
   * connection. Use `apiKey` or `getToken`, not both.
   */
  readonly getToken?: GetToken;
  /**
   * How long one getToken call is waited for before it counts as failed (the connection or request
   * is then tried again, asking anew), so that a refresh stuck on the network cannot hold the
   * client. Default 10000.
   */
  readonly tokenTimeoutMs?: number;
  /** How long `'auto'` waits for the WebSocket before falling back to SSE. Default 3000. */
  readonly wsConnectTimeoutMs?: number;
  /** Called once the transport is known (`'ws'` or `'sse'`), and on every WebSocket reconnect. */
  readonly onTransport?: (transport: 'ws' | 'sse') => void;
  /**
   * Called when the WebSocket in use closes; the client then reconnects by itself (and calls
   * `onTransport('ws')` when it is back). Not called by `closeChatClient`.
   */
  readonly onDisconnect?: () => void;
  /**
   * The most calls one request or WebSocket message carries: the server's `WS_MAX_BATCH` (default
   * 16), above which it refuses a batch whole. More calls at once go out in several.
   */
  readonly maxBatch?: number;
  /** Implementations for runtimes without globals (Node 20 has neither WebSocket nor EventSource). */
  readonly WebSocket?: unknown;
  readonly EventSource?: unknown;
}

interface ClientControl {
  transport(): 'ws' | 'sse' | 'pending';
  close(): Promise<void>;
}

const controls = new WeakMap<object, ClientControl>();

/** The server's default `WS_MAX_BATCH`. */
const DEFAULT_MAX_BATCH = 16;

/** The close code (private range) of a connection replaced to show a fresh token. */
const RENEW_CLOSE_CODE = 4001;

function validate(options: ChatClientOptions): URL {
  let base: URL;
  try {
    base = new URL(options.url);
  } catch {
    throw new TypeError(`createChatClient: url must be an absolute URL such as http://localhost:8000, got "${options.url}"`);
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') {
    throw new TypeError(`createChatClient: url must be http: or https:, got "${base.protocol}"`);
  }
  const transport = options.transport ?? 'auto';
  if (!['ws', 'sse', 'auto'].includes(transport)) {
    throw new TypeError(`createChatClient: transport must be 'ws', 'sse' or 'auto', got "${String(transport)}"`);
  }
  if (options.apiKey !== undefined && options.getToken !== undefined) throw new TypeError('createChatClient: pass apiKey or getToken, not both');
  if (options.getToken !== undefined && typeof options.getToken !== 'function') throw new TypeError('createChatClient: getToken must be a function');
  if (options.apiKey !== undefined && (typeof options.apiKey !== 'string' || options.apiKey === ''))
    throw new TypeError('createChatClient: apiKey must be a non-empty string');
  const timeout = options.wsConnectTimeoutMs;
  if (timeout !== undefined && (!Number.isFinite(timeout) || timeout <= 0)) {
    throw new TypeError(`createChatClient: wsConnectTimeoutMs must be a positive number, got ${timeout}`);
  }
  const tokenTimeout = options.tokenTimeoutMs;
  if (tokenTimeout !== undefined && (!Number.isFinite(tokenTimeout) || tokenTimeout <= 0)) {
    throw new TypeError(`createChatClient: tokenTimeoutMs must be a positive number, got ${tokenTimeout}`);
  }
  const maxBatch = options.maxBatch;
  if (maxBatch !== undefined && (!Number.isInteger(maxBatch) || maxBatch < 1)) {
    throw new TypeError(`createChatClient: maxBatch must be a positive integer, got ${maxBatch}`);
  }
  return base;
}

/** The typed tRPC client for Sluice's `AppRouter`, over WebSocket, SSE, or WebSocket with SSE fallback. */
export function createChatClient(options: ChatClientOptions): ChatClient {
  const base = validate(options);
  const transport = options.transport ?? 'auto';
  const basePath = base.pathname.replace(/\/+$/, '');
  const httpUrl = `${base.origin}${basePath}/trpc`;
  const wsUrl = `${base.protocol === 'https:' ? 'wss:' : 'ws:'}//${base.host}${basePath}/trpc`;
  const EventSourceImpl = (options.EventSource ?? globalThis.EventSource) as EventSourceClass | undefined;
  const WebSocketImpl = (options.WebSocket ?? globalThis.WebSocket) as typeof WebSocket | undefined;
  const credentials = credentialsFor(options);
  const maxBatch = options.maxBatch ?? DEFAULT_MAX_BATCH;

  const httpLinks: TRPCLink<AppRouter> = splitLink({
    condition: (op) => op.type === 'subscription',
    true: [
      sseUrlBound(credentials?.params),
      sseRefusals(),
      httpSubscriptionLink({
        url: httpUrl,
        transformer: superjson,
        ...(EventSourceImpl ? { EventSource: EventSourceImpl } : {}),
        ...(credentials ? { connectionParams: credentials.params } : {}),
      }),
    ],
    false: httpBatchLink({ url: httpUrl, transformer: superjson, headers: credentials?.headers ?? {}, maxItems: maxBatch }),
  });

  const calls = closableCalls();
  if (transport === 'sse') {
    const client = createTRPCClient<AppRouter>({ links: [calls.link, ...retryWithFreshToken(options, () => undefined), httpLinks] });
    controls.set(client, { transport: () => 'sse', close: async () => calls.close() });
    options.onTransport?.('sse');
    return client;
  }

  if (!WebSocketImpl) throw new TypeError('createChatClient: no WebSocket implementation; pass options.WebSocket');

  let decided: 'ws' | 'sse' | 'pending' = transport === 'ws' ? 'ws' : 'pending';
  let decide: (t: 'ws' | 'sse') => void = () => undefined;
  const decision = new Promise<'ws' | 'sse'>((resolve) => {
    decide = (t) => {
      if (decided !== 'pending') return;
      decided = t;
      clearTimeout(timer);
      if (t === 'sse') void wsClient.close();
      options.onTransport?.(t);
      resolve(t);
    };
  });
  const timer = transport === 'auto' ? setTimeout(() => decide('sse'), options.wsConnectTimeoutMs ?? 3000) : undefined;

  let closing: Promise<void> | undefined;
  // Connections closed to renew the credential are not drops: neither their close nor the next
  // open is reported.
  let renewals = 0;
  // The credential for the next connection is asked for before it opens (at start, when a
  // connection closes, before one is replaced to renew it), not once it is open: the server gives a
  // connection WS_AUTH_TIMEOUT_MS to show it, which a slow getToken would otherwise spend.
  let prefetched: Promise<Record<string, string>> | undefined;
  // A credential asked for in this same run of code: calls made together (a burst, a call made as
  // its client is) share its answer. Never one asked before: the user may have switched since, and a
  // call made after the switch must not be sent with the previous user's token.
  let asking: Promise<Record<string, string>> | undefined;
  // Asks in the order they were made: a connection tells which user was signed in when its
  // credential was asked for, and a call asked for earlier must not replace it (see ws-identity.ts).
  let asks = 0;
  const orderOf = new WeakMap<Promise<Record<string, string>>, number>();
  const ask = (c: Credentials): Promise<Record<string, string>> => {
    const params = c.params();
    orderOf.set(params, ++asks);
    asking = params;
    queueMicrotask(() => {
      if (asking === params) asking = undefined;
    });
    return params;
  };
  const prefetch = (): void => {
    if (!credentials || prefetched) return;
    prefetched = ask(credentials);
    prefetched.catch(() => undefined);
  };
  prefetch();
  // Whom each socket was given the credential of, and the socket being opened (tRPC opens one at a time).
  const identities = new WeakMap<WebSocket, { readonly identity: string; readonly order: number }>();
  let opening: WebSocket | undefined;
  let openWaiters: Array<() => void> = [];
  const wakeOpenWaiters = (): void => {
    const waiters = openWaiters;
    openWaiters = [];
    for (const wake of waiters) wake();
  };
  const Batched = withBatchLimit(WebSocketImpl, maxBatch);
  const refusals = new ConnectionRefusals();
  const noteOpening = (socket: WebSocket): void => {
    opening = socket;
    socket.addEventListener('message', (event: MessageEvent) => refusals.observe(socket, event.data));
    socket.addEventListener('error', (event: Event) => refusals.observeError(event));
  };
  const wsClient = createWSClient({
    url: wsUrl,
    WebSocket: class extends Batched {
      constructor(...args: ConstructorParameters<typeof WebSocket>) {
        super(...args);
        noteOpening(this);
      }
    },
    ...(credentials
      ? {
          connectionParams: () => {
            const socket = opening;
            const params = prefetched ?? ask(credentials);
            const order = orderOf.get(params) ?? 0;
            prefetched = undefined;
            return params.then((p) => {
              if (socket) identities.set(socket, { identity: identityOf(p.token), order });
              // tRPC sends them and counts the connection open in the microtasks that follow.
              setTimeout(wakeOpenWaiters, 0);
              return p;
            });
          },
        }
      : {}),
    keepAlive: { enabled: true, intervalMs: 10_000, pongTimeoutMs: 5_000 },
    onOpen: () => {
      if (decided === 'pending') decide('ws');
      else if (renewals > 0) renewals--;
      else if (decided === 'ws') options.onTransport?.('ws');
    },
    // Before the first open, any failure means this network will not carry WebSockets.
    onError: () => decide('sse'),
    onClose: (cause) => {
      // A drop of the connection in use (a reconnect follows), not one retired at the server's
      // request once its replacement is open: that is no disconnect, and a token kept for it (or
      // for the fallback to SSE) would wait, going stale, for whenever the next drop comes.
      const dropped = wsClient.connection?.state !== 'open';
      if (!closing && decided !== 'sse' && dropped) prefetch();
      if (decided === 'ws' && !closing && dropped && cause?.code !== RENEW_CLOSE_CODE) options.onDisconnect?.();
      decide('sse');
    },
  });
  // A refused token is replaced by a new connection, whose connectionParams ask getToken again:
  // closing the socket in use makes the client reconnect, and resume its streams, by itself.
  const renewConnection = (): void => {
    const connection = wsClient.connection;
    if (decided !== 'ws' || connection?.state !== 'open') return;
    prefetched = undefined;
    prefetch();
    renewals++;
    connection.ws.close(RENEW_CLOSE_CODE, 'renewing the credential');
  };
  const wsOnly = refusals.link(wsLink<AppRouter>({ client: wsClient, transformer: superjson }));
  const wsLinks: TRPCLink<AppRouter> =
    credentials && options.getToken
      ? sameIdentity(wsOnly, {
          current: () => {
            const params = asking ?? ask(credentials);
            return { params, order: orderOf.get(params) ?? 0 };
          },
          openedFor: () => {
            const connection = wsClient.connection;
            return connection?.state === 'open' ? (identities.get(connection.ws) ?? { identity: '', order: 0 }) : undefined;
          },
          renew: renewConnection,
          nextOpen: () => {
            if (closing) return { opened: Promise.resolve(), cancel: () => undefined };
            let wake!: () => void;
            const opened = new Promise<void>((resolve) => (wake = resolve));
            openWaiters.push(wake);
            return {
              opened,
              cancel: () => {
                openWaiters = openWaiters.filter((w) => w !== wake);
                wake();
              },
            };
          },
        })
      : wsOnly;

  const links: TRPCLink<AppRouter>[] =
    transport === 'ws'
      ? [calls.link, ...retryWithFreshToken(options, renewConnection), ...resumeRefusedStreams(), wsLinks]
      : [
          calls.link,
          ...retryWithFreshToken(options, renewConnection),
          ...resumeRefusedStreams(),
          (runtime) => {
            const viaWs = wsLinks(runtime);
            const viaHttp = httpLinks(runtime);
            return ({ op, next }) =>
              observable((observer) => {
                let inner: Unsubscribable | undefined;
                let stopped = false;
                // A call aborted before the decision ends at once, as the links after it would end it.
                const onAbort = (): void => {
                  if (stopped || inner) return;
                  stopped = true;
                  observer.complete();
                };
                op.signal?.addEventListener('abort', onAbort, { once: true });
                void decision.then((t) => {
                  if (stopped || op.signal?.aborted) return onAbort();
                  op.signal?.removeEventListener('abort', onAbort);
                  inner = (t === 'ws' ? viaWs : viaHttp)({ op, next }).subscribe(observer);
                });
                return () => {
                  stopped = true;
                  op.signal?.removeEventListener('abort', onAbort);
                  inner?.unsubscribe();
                };
              });
          },
        ];

  const client = createTRPCClient<AppRouter>({ links });
  controls.set(client, {
    transport: () => decided,
    close: () => {
      closing ??= (async () => {
        clearTimeout(timer);
        // First the calls: a subscription still waiting to be sent would open the socket again.
        calls.close();
        wakeOpenWaiters();
        await wsClient.close();
      })();
      return closing;
    },
  });
  return client;
}

/** Which transport a client ended up using (`'pending'` while `'auto'` is still deciding). */
export function chatClientTransport(client: ChatClient): 'ws' | 'sse' | 'pending' {
  return controls.get(client)?.transport() ?? 'pending';
}

/** Ends the client's calls (its streams end as if completed) and closes its WebSocket, if any. Safe to call twice. */
export function closeChatClient(client: ChatClient): Promise<void> {
  return controls.get(client)?.close() ?? Promise.resolve();
}

interface Credentials {
  /** `connectionParams` for WebSocket and SSE: `{ apiKey }` or `{ token }`. */
  readonly params: () => Promise<Record<string, string>>;
  readonly headers: () => Promise<Record<string, string>>;
}

/** How the client shows its credential, or undefined when it has none. */
function credentialsFor(options: ChatClientOptions): Credentials | undefined {
  const { apiKey, getToken } = options;
  if (apiKey !== undefined) {
    return { params: async () => ({ apiKey }), headers: async () => ({ authorization: `Bearer ${apiKey}` }) };
  }
  if (getToken === undefined) return undefined;
  const timeoutMs = options.tokenTimeoutMs ?? DEFAULT_TOKEN_TIMEOUT_MS;
  const token = async (): Promise<string | undefined> =>
    (await within(Promise.resolve(getToken()), timeoutMs, () => {
      throw new Error(`getToken did not answer within ${timeoutMs} ms`);
    })) || undefined;
  return {
    params: async (): Promise<Record<string, string>> => {
      const current = await token();
      return current ? { token: current } : {};
    },
    headers: async (): Promise<Record<string, string>> => {
      const current = await token();
      return current ? { authorization: `Bearer ${current}` } : {};
    },
  };
}

/** See ChatClientOptions.tokenTimeoutMs. */
const DEFAULT_TOKEN_TIMEOUT_MS = 10_000;

/**
 * With `getToken`, a call refused as UNAUTHORIZED (the token expired, say) is made once more, with
 * a fresh token: over HTTP and SSE each request asks getToken; over WebSocket the token goes with
 * the connection, so `renew` replaces it first. A stream refused when it reconnects after a drop
 * (EventSource reconnects with the URL, and the token, it was made with) is made again each time it
 * had delivered something since its last try, resuming from its last event: a long reply may meet
 * several drops and expiries; a token that is refused at once, twice in a row, is refused.
 */
function retryWithFreshToken(options: ChatClientOptions, renew: () => void): TRPCLink<AppRouter>[] {
  if (!options.getToken) return [];
  const { link: progress, delivered } = deliveredTries();
  return [
    retryLink<AppRouter>({
      retry: ({ op, error, attempts }) => {
        if (error.data?.code !== 'UNAUTHORIZED' || (attempts > 1 && !delivered.has(op))) return false;
        renew();
        return true;
      },
    }),
    progress,
  ];
}

/**
 * A link that ends the calls still open when the client closes (subscriptions complete, the others
 * fail), and refuses new ones: a closed client holds nothing and opens nothing.
 */
function closableCalls(): { link: TRPCLink<AppRouter>; close: () => void } {
  const open = new Set<() => void>();
  let closed = false;
  const closedError = () => TRPCClientError.from(new Error('The chat client is closed'));
  const link: TRPCLink<AppRouter> =
    () =>
    ({ op, next }) =>
      observable((observer) => {
        if (closed) {
          observer.error(closedError());
          return;
        }
        const end = (): void => {
          open.delete(end);
          inner.unsubscribe();
          if (op.type === 'subscription') observer.complete();
          else observer.error(closedError());
        };
        open.add(end);
        const inner = next(op).subscribe({
          next: (value) => observer.next(value),
          error: (error) => {
            open.delete(end);
            observer.error(error);
          },
          complete: () => {
            open.delete(end);
            observer.complete();
          },
        });
        return () => {
          open.delete(end);
          inner.unsubscribe();
        };
      });
  return {
    link,
    close: () => {
      closed = true;
      for (const end of [...open]) end();
    },
  };
}
