import { initTRPC, tracked } from '@trpc/server';
import superjson from 'superjson';
import { z } from 'zod';
import { delayFromEnv, pacedDeltas, replyId } from './paced.ts';
import { asDeltas } from '../../server/core/providers/provider.ts';

// The minimal tRPC v11 router the issue compares against: the same procedure path, input and event
// shapes as Sluice's `chat.stream` (superjson, `tracked(id, event)`), streaming the simulator's
// template directly. No sessions, history or event log.

const delayMs = delayFromEnv();
const t = initTRPC.create({ transformer: superjson, isDev: false });

export const minimalRouter = t.router({
  health: t.procedure.query(() => ({ status: 'ok' as const })),
  chat: t.router({
    stream: t.procedure
      .input(z.object({ message: z.string().min(1), sessionId: z.string().optional(), lastEventId: z.string().nullish() }))
      .subscription(async function* ({ input, signal }) {
        const id = replyId();
        let n = 0;
        for await (const item of pacedDeltas(input.message, delayMs, signal ?? new AbortController().signal))
          for (const delta of asDeltas(item)) {
            n++;
            yield tracked(`${id}:${n}`, { type: 'delta' as const, delta, index: n });
          }
        yield tracked(`${id}:${n + 1}`, { type: 'done' as const, totalChunks: n });
      }),
  }),
});

export type MinimalRouter = typeof minimalRouter;
