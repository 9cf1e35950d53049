import { once } from 'node:events';
import type { TRPCClient } from '@trpc/client';
import { describe, expect, it } from 'vitest';
import { simulatedDeltas } from '../server/core/providers/simulated.ts';
import type { AppRouter } from '../server/router-type.ts';
import { SessionHistory, type StreamEvent } from '../shared/index.ts';
import { startSluiceProcess } from './helpers/process.ts';
import { startServer } from './helpers/server.ts';
import { stockClient } from './helpers/trpc-clients.ts';
import { startTcpProxy, type TcpProxy } from './helpers/tcp-proxy.ts';

// A stock tRPC client whose connection drops after `started` but before the first token (a model
// that is slow to start) reconnects by itself: it must get the whole reply, not a CONFLICT with
// its own running reply. The same when a SIGTERM asks WebSocket clients to reconnect.

const PROMPT = 'slow to start';
const FULL = simulatedDeltas(PROMPT);
function subscribe(client: TRPCClient<AppRouter>, sessionId: string, onStarted: () => void): Promise<{ events: StreamEvent[]; error?: unknown }> {
  return new Promise((resolve) => {
    const events: StreamEvent[] = [];
    let started = false;
    const sub = client.chat.stream.subscribe(
      { message: PROMPT, sessionId },
      {
        onStarted: () => {
          if (started) return;
          started = true;
          onStarted();
        },
        onData: ({ data }) => {
          if (data.type === 'start') return;
          events.push(data);
          if (data.type !== 'delta') {
            sub.unsubscribe();
            resolve({ events });
          }
        },
        onError: (error) => resolve({ events, error }),
      },
    );
  });
}

const expectWhole = (result: { events: StreamEvent[]; error?: unknown }): void => {
  expect(result.error).toBeUndefined();
  const deltas = result.events.filter((e) => e.type === 'delta');
  expect(deltas.map((e) => e.index)).toEqual(FULL.map((_, i) => i + 1));
  expect(result.events.at(-1)).toMatchObject({ type: 'done', totalChunks: FULL.length });
};

describe('a connection cut before the first token', () => {
  for (const kind of ['ws', 'sse'] as const) {
    it(`${kind}: the stock link reconnects and gets the whole reply, once`, async () => {
      const server = await startServer({ SIM_DELAY_MS: 5, SIM_FIRST_TOKEN_MS: 600, RESUME_GRACE_MS: 10_000 });
      const proxy: TcpProxy = await startTcpProxy(server.url);
      const client = stockClient(proxy.url, kind, { retryDelayMs: 20 }).client;
      const result = await subscribe(client, `early-${kind}`, () => setTimeout(() => proxy.dropAll(), 50));
      expectWhole(result);
      const history = SessionHistory.parse(await (await fetch(`${server.url}/v1/sessions/early-${kind}/messages`)).json());
      expect(history.messages.map((m) => [m.role, m.status])).toEqual([
        ['user', 'complete'],
        ['assistant', 'complete'],
      ]);
    });
  }

  it('SIGTERM: a reply that has no token yet finishes within the drain window, over the stock wsLink', async () => {
    const sluice = await startSluiceProcess({ SIM_DELAY_MS: 5, SIM_FIRST_TOKEN_MS: 800, SHUTDOWN_DRAIN_MS: 8000, RESUME_GRACE_MS: 5000 });
    const client = stockClient(sluice.url, 'ws', { retryDelayMs: 20 }).client;
    const exited = once(sluice.child, 'exit');
    const result = await subscribe(client, 'drain', () => sluice.child.kill('SIGTERM'));
    expectWhole(result);
    const [code] = await exited;
    expect(code).toBe(0);
  });
});
