import { describe, expect, it } from 'vitest';
import { streamChat } from '../client/index.ts';
import { chatClient, collect } from './helpers/chat-clients.ts';
import { startServer } from './helpers/server.ts';

const KEY = 'k-alice-0123456789';
const outcome = (call: Promise<unknown>): Promise<string> =>
  call.then(
    () => 'resolved',
    (error: { message?: string; data?: { sluiceCode?: string } }) => `${error.data?.sluiceCode ?? 'no sluiceCode'}: ${error.message}`,
  );

describe('review: a call made as soon as the previous one was refused with its connection', () => {
  it.each(['stream'] as const)(
    "over ws, past MAX_WS_CONNECTIONS_PER_KEY, a %s made right after a refused query is refused typed, not with tRPC's 'Active connection is not open'",
    async (kind) => {
      const { url } = await startServer({ API_KEYS: KEY, MAX_WS_CONNECTIONS_PER_KEY: 1 });
      const first = chatClient({ url, transport: 'ws', apiKey: KEY });
      await first.chat.history.query({ sessionId: 's' });
      // The race is narrow: a few second tabs, each tried once.
      const seen: string[] = [];
      for (let tab = 0; tab < 6; tab++) {
        const second = chatClient({ url, transport: 'ws', apiKey: KEY });
        expect(await outcome(second.chat.history.query({ sessionId: 's' }))).toBe('rate_limited: Too many WebSocket connections for this key (limit 1)');
        // The user presses "retry" (or sends) at once.
        const next = collect(streamChat(second, { message: `${kind} hi`, sessionId: 's', giveUpAfterMs: 10_000 }));
        seen.push(await outcome(next));
      }
      expect(new Set(seen)).toEqual(new Set(['rate_limited: Too many WebSocket connections for this key (limit 1)']));
    },
    40_000,
  );
});
