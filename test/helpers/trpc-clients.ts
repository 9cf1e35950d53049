import { createTRPCClient, createWSClient, httpBatchLink, httpSubscriptionLink, splitLink, wsLink, type TRPCClient } from '@trpc/client';
import { EventSource } from 'eventsource';
import superjson from 'superjson';
import WebSocket from 'ws';
import { afterEach } from 'vitest';
import type { AppRouter } from '../../server/router-type.ts';
import type { StreamEvent } from '../../shared/stream-events.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

export type Kind = 'ws' | 'sse';

/** A stock tRPC client: wsLink, or httpSubscriptionLink (with the `eventsource` package) + httpBatchLink. */
export function stockClient(
  baseUrl: string,
  kind: Kind,
  options: { apiKey?: string; retryDelayMs?: number } = {},
): { client: TRPCClient<AppRouter>; close: () => Promise<void> } {
  const { apiKey, retryDelayMs } = options;
  if (kind === 'ws') {
    const wsClient = createWSClient({
      url: `${baseUrl.replace(/^http/, 'ws')}/trpc`,
      WebSocket: WebSocket as never,
      ...(apiKey ? { connectionParams: { apiKey } } : {}),
      ...(retryDelayMs === undefined ? {} : { retryDelayMs: () => retryDelayMs }),
    });
    const client = createTRPCClient<AppRouter>({ links: [wsLink({ client: wsClient, transformer: superjson })] });
    const close = () => wsClient.close();
    cleanups.push(close);
    return { client, close };
  }
  const headers: Record<string, string> = apiKey ? { authorization: `Bearer ${apiKey}` } : {};
  const client = createTRPCClient<AppRouter>({
    links: [
      splitLink({
        condition: (op) => op.type === 'subscription',
        true: httpSubscriptionLink({
          url: `${baseUrl}/trpc`,
          transformer: superjson,
          EventSource,
          // EventSource sends no headers of its own: the key goes through its fetch.
          eventSourceOptions: () => ({ fetch: (url, init) => fetch(url, { ...init, headers: { ...init?.headers, ...headers } }) }),
        }),
        false: httpBatchLink({ url: `${baseUrl}/trpc`, transformer: superjson, headers }),
      }),
    ],
  });
  return { client, close: async () => undefined };
}

export interface Collected {
  readonly ids: string[];
  readonly events: StreamEvent[];
}

/** Subscribes to chat.stream and collects every event until the terminal one. */
export function collectStream(
  client: TRPCClient<AppRouter>,
  input: { message: string; sessionId?: string; lastEventId?: string },
  onEvent?: (event: StreamEvent, unsubscribe: () => void) => void,
): Promise<Collected> {
  return new Promise((resolve, reject) => {
    const ids: string[] = [];
    const events: StreamEvent[] = [];
    const sub = client.chat.stream.subscribe(input, {
      onData: ({ id, data }) => {
        // `start` gives the links an id to resume from; it is not part of the reply.
        if (data.type === 'start') return;
        ids.push(id);
        events.push(data);
        if (data.type !== 'delta') {
          sub.unsubscribe();
          resolve({ ids, events });
        } else
          onEvent?.(data, () => {
            sub.unsubscribe();
            resolve({ ids, events });
          });
      },
      onError: reject,
      onComplete: () => resolve({ ids, events }),
    });
  });
}
