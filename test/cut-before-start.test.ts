import type { TRPCClient } from '@trpc/client';
import { describe, expect, it } from 'vitest';
import { simulatedDeltas } from '../server/core/providers/simulated.ts';
import type { AppRouter } from '../server/router-type.ts';
import { SessionHistory, type StreamEvent } from '../shared/index.ts';
import { startServer } from './helpers/server.ts';
import { stockClient } from './helpers/trpc-clients.ts';
import { startTcpProxy } from './helpers/tcp-proxy.ts';

// early-cut.test.ts covers a connection cut once the client has the reply's `start` event (it then
// resumes by that id). This is the cut one step earlier: the server has taken the session and
// stored the turn, and the connection dies as the `start` event goes out. The stock link
// reconnects by itself and sends the same subscription again, with no id to resume from. It must
// get its reply (once), not a CONFLICT with its own reply, which runs on with nobody listening.

const PROMPT = 'cut before start';
const FULL = simulatedDeltas(PROMPT);
function subscribe(client: TRPCClient<AppRouter>, sessionId: string): Promise<{ events: StreamEvent[]; error?: unknown }> {
  return new Promise((resolve) => {
    const events: StreamEvent[] = [];
    const sub = client.chat.stream.subscribe(
      { message: PROMPT, sessionId },
      {
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

describe('a connection cut as the reply is announced (before the client has any event id)', () => {
  for (const kind of ['ws', 'sse'] as const) {
    it(`${kind}: the stock link reconnects and gets its reply, stored once (not a CONFLICT with its own reply, nor a second turn)`, async () => {
      // An EventSource tries again 3 s after a drop: over SSE the reply lasts longer, as a model's
      // does. (One that has ended by then is in history, and the request a new turn: nothing in
      // it tells the two apart.)
      const server = await startServer({ SIM_DELAY_MS: kind === 'ws' ? 5 : 120, SIM_FIRST_TOKEN_MS: 300, RESUME_GRACE_MS: 10_000 });
      const proxy = await startTcpProxy(server.url);
      // The server's frame that carries the `start` event (it names the reply) is lost with its connection.
      proxy.loseAnswer('"replyId"');
      const client = stockClient(proxy.url, kind, { retryDelayMs: 20 }).client;
      const result = await subscribe(client, `cut-${kind}`);
      expect(result.error).toBeUndefined();
      const deltas = result.events.filter((e) => e.type === 'delta');
      expect(deltas.map((e) => e.index)).toEqual(FULL.map((_, i) => i + 1));
      expect(result.events.at(-1)).toMatchObject({ type: 'done', totalChunks: FULL.length });
      const history = SessionHistory.parse(await (await fetch(`${server.url}/v1/sessions/cut-${kind}/messages`)).json());
      expect(history.messages.map((m) => [m.role, m.status])).toEqual([
        ['user', 'complete'],
        ['assistant', 'complete'],
      ]);
    }, 20_000);
  }
});
