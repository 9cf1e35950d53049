import { createTRPCClient, createWSClient, httpBatchLink, httpSubscriptionLink, splitLink, wsLink, type TRPCClient, type TRPCLink } from '@trpc/client';
import { observable, type Unsubscribable } from '@trpc/server/observable';
import superjson from 'superjson';
import type { AppRouter } from '../server/router-type.ts';

export type Transport = 'ws' | 'sse' | 'auto';
export type ChatClient = TRPCClient<AppRouter>;

type EventSourceClass = new (url: string, init?: { withCredentials?: boolean; fetch?: typeof fetch }) => EventSource;

export interface ChatClientOptions {
  /** The server's base URL, such as `http://localhost:8000`. */
  readonly url: string;
  /** `'auto'` (default): WebSocket, falling back to SSE when it cannot connect within `wsConnectTimeoutMs`. */
  readonly transport?: Transport;
  /** Sent as `Authorization: Bearer` over HTTP/SSE and as `connectionParams.apiKey` over WebSocket. */
  readonly apiKey?: string;
  /** How long `'auto'` waits for the WebSocket before falling back to SSE. Default 3000. */
  readonly wsConnectTimeoutMs?: number;
  /** Called once the transport is known (`'ws'` or `'sse'`), and on every WebSocket reconnect. */
  readonly onTransport?: (transport: 'ws' | 'sse') => void;
  /**
   * Called when the WebSocket in use closes; the client then reconnects by itself (and calls
   * `onTransport('ws')` when it is back). Not called by `closeChatClient`.
   */
  readonly onDisconnect?: () => void;
  /** Implementations for runtimes without globals (Node 20 has neither WebSocket nor EventSource). */
  readonly WebSocket?: unknown;
  readonly EventSource?: unknown;
}

interface ClientControl {
  transport(): 'ws' | 'sse' | 'pending';
  close(): Promise<void>;
}

const controls = new WeakMap<object, ClientControl>();

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
  const timeout = options.wsConnectTimeoutMs;
  if (timeout !== undefined && (!Number.isFinite(timeout) || timeout <= 0)) {
    throw new TypeError(`createChatClient: wsConnectTimeoutMs must be a positive number, got ${timeout}`);
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
  const authHeaders: Record<string, string> = options.apiKey ? { authorization: `Bearer ${options.apiKey}` } : {};
  const EventSourceImpl = (options.EventSource ?? globalThis.EventSource) as EventSourceClass | undefined;
  const WebSocketImpl = (options.WebSocket ?? globalThis.WebSocket) as typeof WebSocket | undefined;

  const httpLinks: TRPCLink<AppRouter> = splitLink({
    condition: (op) => op.type === 'subscription',
    true: httpSubscriptionLink({
      url: httpUrl,
      transformer: superjson,
      ...(EventSourceImpl ? { EventSource: EventSourceImpl } : {}),
      // EventSource has no header option: the key goes through a fetch of our own.
      eventSourceOptions: () =>
        options.apiKey
          ? {
              fetch: (url: RequestInfo | URL, init?: RequestInit) =>
                fetch(url, { ...init, headers: { ...(init?.headers as Record<string, string>), ...authHeaders } }),
            }
          : {},
    }),
    // Within the server's default batch limit (WS_MAX_BATCH, 10 calls), which refuses a bigger batch whole.
    false: httpBatchLink({ url: httpUrl, transformer: superjson, headers: () => authHeaders, maxItems: 10 }),
  });

  if (transport === 'sse') {
    const client = createTRPCClient<AppRouter>({ links: [httpLinks] });
    controls.set(client, { transport: () => 'sse', close: async () => undefined });
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
  const wsClient = createWSClient({
    url: wsUrl,
    WebSocket: WebSocketImpl,
    ...(options.apiKey ? { connectionParams: { apiKey: options.apiKey } } : {}),
    keepAlive: { enabled: true, intervalMs: 10_000, pongTimeoutMs: 5_000 },
    onOpen: () => {
      if (decided === 'pending') decide('ws');
      else if (decided === 'ws') options.onTransport?.('ws');
    },
    // Before the first open, any failure means this network will not carry WebSockets.
    onError: () => decide('sse'),
    onClose: () => {
      if (decided === 'ws' && !closing) options.onDisconnect?.();
      decide('sse');
    },
  });
  const wsLinks = wsLink<AppRouter>({ client: wsClient, transformer: superjson });

  const links: TRPCLink<AppRouter>[] =
    transport === 'ws'
      ? [wsLinks]
      : [
          (runtime) => {
            const viaWs = wsLinks(runtime);
            const viaHttp = httpLinks(runtime);
            return ({ op, next }) =>
              observable((observer) => {
                let inner: Unsubscribable | undefined;
                let stopped = false;
                void decision.then((t) => {
                  if (!stopped) inner = (t === 'ws' ? viaWs : viaHttp)({ op, next }).subscribe(observer);
                });
                return () => {
                  stopped = true;
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

/** Closes the client's WebSocket, if any. Safe to call twice. */
export function closeChatClient(client: ChatClient): Promise<void> {
  return controls.get(client)?.close() ?? Promise.resolve();
}
