import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createTRPCClient, createWSClient, wsLink } from '@trpc/client';
import superjson from 'superjson';
import WebSocket from 'ws';
import { describe, expect, it, vi } from 'vitest';
import { createSimulatedProvider } from '../server/core/providers/simulated.ts';
import type { Provider } from '../server/core/providers/provider.ts';
import type { AppRouter } from '../server/router-type.ts';
import { recordingProvider } from './helpers/recording-provider.ts';
import { captureLogs } from './helpers/logs.ts';
import { expectTimersBackTo, startServer, timerCount } from './helpers/server.ts';
import { streamSseRoute, type SseFrame } from './helpers/sse.ts';
import { collectStream, stockClient } from './helpers/trpc-clients.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const heapUsed = (): number => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};

describe('disconnect storm', () => {
  it('hundreds of clients leaving mid-stream at once leave nothing running, and memory comes back', async () => {
    // Storm replies are slow enough (a token a second) that every client is still mid-stream when
    // the storm starts, however long connecting them takes; the others are quick.
    const slow = createSimulatedProvider({ delayMs: 1000 });
    const fast = createSimulatedProvider({ delayMs: 5 });
    const recorder = recordingProvider({
      name: 'storm',
      stream: (request) => (request.messages.at(-1)?.content === 'storm' ? slow : fast).stream(request),
    });
    const server = await startServer({ RESUME_GRACE_MS: 0, LOG_LEVEL: 'silent' }, { provider: recorder.provider });
    // Warm up code paths before the baseline.
    for await (const _ of streamSseRoute(server.url, { message: 'warm' })) void _;
    const timersBefore = timerCount();
    const heapBefore = heapUsed();

    const SSE = 300;
    const WS = 100;
    const ready: Array<Promise<() => Promise<void>>> = [];
    for (let i = 0; i < SSE; i++) {
      ready.push(
        (async () => {
          const controller = new AbortController();
          const iterator = streamSseRoute(server.url, { message: 'storm', session_id: `sse-${i}` }, { signal: controller.signal });
          await iterator.next();
          return async () => {
            controller.abort();
            await iterator.return(undefined).catch(() => undefined);
          };
        })(),
      );
    }
    for (let i = 0; i < WS; i++) {
      ready.push(
        (async () => {
          const wsClient = createWSClient({ url: `${server.url.replace('http', 'ws')}/trpc`, WebSocket: WebSocket as never });
          const client = createTRPCClient<AppRouter>({ links: [wsLink({ client: wsClient, transformer: superjson })] });
          await new Promise<void>((resolve) => {
            client.chat.stream.subscribe({ message: 'storm', sessionId: `ws-${i}` }, { onData: () => resolve() });
          });
          return () => wsClient.close();
        })(),
      );
    }
    const leave = await Promise.all(ready);
    expect(server.sluice.service.runningCount).toBe(SSE + WS);
    const heapPeak = heapUsed();

    await Promise.all(leave.map((go) => go())); // everyone leaves at once
    // Drop the test's own references to the departed clients before measuring.
    leave.length = 0;
    ready.length = 0;

    await vi.waitFor(
      () => {
        expect(server.sluice.service.runningCount).toBe(0);
        expect(server.sluice.service.openListeners).toBe(0);
        expect(recorder.calls.filter((c) => !c.settled)).toHaveLength(0);
      },
      { timeout: 15_000 },
    );
    expect(recorder.calls.filter((c) => c.aborted).length).toBeGreaterThanOrEqual(SSE + WS);
    await expectTimersBackTo(timersBefore);
    // Nothing holds on to the departed: the heap returns near where it started.
    // What stays on purpose: each session's history and its reply's resumable log (EVENT_LOG_TTL_MS).
    // Everything else the storm held (sockets, listeners, buffers, timers) must be gone.
    await vi.waitFor(() => expect(heapUsed() - heapBefore).toBeLessThan(0.4 * (heapPeak - heapBefore)), {
      timeout: 10_000,
    });
    // And the server still serves.
    const { client } = stockClient(server.url, 'ws');
    expect((await collectStream(client, { message: 'after the storm' })).events.at(-1)).toMatchObject({ type: 'done' });
  });
});

describe('fault isolation', () => {
  it('a failing provider call, a throwing provider and malformed HTTP do not touch other streams; errors are logged with the stream id', async () => {
    const { logger, lines } = captureLogs('warn');
    const simulator = createSimulatedProvider({ delayMs: 10 });
    const provider: Provider = {
      name: 'moody',
      stream(request) {
        const prompt = request.messages.at(-1)!.content;
        if (prompt === 'throw now') throw new TypeError('provider bug: secret internals');
        if (prompt === 'fail later') {
          return (async function* () {
            yield 'partial ';
            throw new RangeError('upstream bug: secret internals');
          })();
        }
        return simulator.stream(request);
      },
    };
    const server = await startServer({ LOG_LEVEL: 'warn' }, { provider, logger });
    const healthy = streamSseRoute(server.url, { message: 'healthy', session_id: 'ok' });
    await healthy.next();

    const { client } = stockClient(server.url, 'ws');
    for (const message of ['throw now', 'fail later']) {
      const { events } = await collectStream(client, { message, sessionId: message.replace(' ', '-') });
      expect(events.at(-1)).toMatchObject({ type: 'error', code: 'internal', message: 'Internal error' });
      expect(JSON.stringify(events)).not.toMatch(/secret internals/);
    }
    // Garbage on a socket of its own.
    const { connect } = await import('node:net');
    const raw = connect(server.port, '127.0.0.1');
    raw.resume();
    raw.end('THIS IS NOT HTTP\r\n\r\n');
    await new Promise((resolve) => raw.on('close', resolve));

    let last: SseFrame | undefined;
    for await (const frame of healthy) last = frame;
    expect(JSON.parse(last!.data)).toMatchObject({ done: true });
    const failures = lines.filter((l) => l['msg'] === 'generation failed unexpectedly');
    expect(failures).toHaveLength(2);
    for (const line of failures) expect(line['generationId']).toEqual(expect.any(String));
  });
});
