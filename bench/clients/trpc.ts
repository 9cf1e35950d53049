import { createTRPCClient, createWSClient, httpSubscriptionLink, wsLink, type TRPCClient } from '@trpc/client';
import { EventSource } from 'eventsource';
import superjson from 'superjson';
import { Agent, fetch as undiciFetch } from 'undici';
import WebSocket from 'ws';
import type { AppRouter } from '../../server/router-type.ts';
import { StreamCheck, type StreamOutcome } from '../stream-check.ts';
import type { LoadClient, StreamRequest, User } from './types.ts';

// Stock tRPC v11 clients, for Sluice and for the minimal tRPC baselines (which serve the same
// `chat.stream` path, input and events, so the same typed client talks to both).
//
// - WebSocket: one `createWSClient` per user (each chat client has its own socket), opened with the
//   user's first stream and kept for its later ones.
// - SSE: `httpSubscriptionLink` with the `eventsource` package. One tRPC client is shared: the link
//   keeps no state between operations, and every subscription is its own EventSource request anyway.
//   Its requests go through a keep-alive agent of the client's own (not the process's global fetch
//   dispatcher), so that a new client opens new connections (the storm scenario) and closing it
//   closes them.
//
// As Sluice's own `streamChat` does, a stream is unsubscribed as soon as its terminal event arrives.

function subscribe(client: TRPCClient<AppRouter>, req: StreamRequest): Promise<StreamOutcome> {
  return new Promise((resolve) => {
    const check = new StreamCheck(req.expected);
    let generation: string | undefined;
    const finish = (o: StreamOutcome): void => {
      clearTimeout(timer);
      sub.unsubscribe();
      resolve(o);
    };
    const timer = setTimeout(() => finish(check.fail(`timed out after ${req.timeoutMs} ms`)), req.timeoutMs);
    const sub = client.chat.stream.subscribe(
      { message: req.message, sessionId: req.sessionId },
      {
        onData: ({ id, data }) => {
          if (check.finished) return;
          const at = id.lastIndexOf(':');
          const prefix = id.slice(0, at);
          generation ??= prefix;
          const seq = Number(id.slice(at + 1));
          switch (data.type) {
            case 'delta':
              if (prefix !== generation || seq !== data.index) check.flag(`event id ${id} does not match delta ${data.index}`);
              check.delta(data.delta, data.index);
              break;
            case 'done':
              finish(check.done(data.totalChunks));
              break;
            case 'error':
              finish(check.fail(`error event: ${data.code}: ${data.message}`));
              break;
          }
        },
        onError: (error) => finish(check.fail(`subscription failed: ${error.message}`)),
        onComplete: () => finish(check.fail('the subscription ended before the last event')),
      },
    );
  });
}

export function trpcWsClient(baseUrl: string): LoadClient {
  const url = `${baseUrl.replace(/^http/, 'ws')}/trpc`;
  const sockets = new Set<ReturnType<typeof createWSClient>>();
  const user = (): User => {
    let ws: ReturnType<typeof createWSClient> | undefined;
    let client: TRPCClient<AppRouter> | undefined;
    return {
      stream: (req) => {
        if (!client) {
          ws = createWSClient({ url, WebSocket: WebSocket as never });
          sockets.add(ws);
          client = createTRPCClient<AppRouter>({ links: [wsLink({ client: ws, transformer: superjson })] });
        }
        return subscribe(client, req);
      },
      close: async () => {
        if (!ws) return;
        sockets.delete(ws);
        await ws.close();
      },
    };
  };
  return {
    user,
    close: async () => {
      await Promise.all([...sockets].map((ws) => ws.close()));
    },
  };
}

export function trpcSseClient(baseUrl: string): LoadClient {
  const agent = new Agent({ connections: null, pipelining: 1 });
  const fetch = ((url: string | URL, init?: Record<string, unknown>) => undiciFetch(url, { ...init, dispatcher: agent })) as unknown as typeof globalThis.fetch;
  const client = createTRPCClient<AppRouter>({
    links: [httpSubscriptionLink({ url: `${baseUrl}/trpc`, transformer: superjson, EventSource, eventSourceOptions: { fetch } })],
  });
  return {
    user: () => ({ stream: (req) => subscribe(client, req), close: async () => undefined }),
    close: () => agent.destroy(),
  };
}
