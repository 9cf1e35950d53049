import { initTRPC, tracked } from '@trpc/server';
import type { ChatStreamInput } from '../../../shared/chat-request.ts';
import { CancelInput, HistoryInput, SessionRef } from '../../../shared/chat-request.ts';
import { drainBatches } from '../drain.ts';
import { inputParser } from '../parse-input.ts';
import { historyChars } from './answer-budget.ts';
import type { TRPCContext } from './context.ts';
import { sluiceCauseOf, sluiceCodeOf, toTRPCError } from './errors.ts';
import { transformer } from './transformer.ts';

export interface RouterOptions {
  /** Interval of tRPC's SSE `ping` events (0: none). */
  readonly ssePingMs: number;
}

/**
 * `chat.stream`'s input as the client types it. It is validated by the admission (with the
 * credential and rate limit checked first), which every transport shares, so tRPC passes it on.
 */
const chatStreamInput = (value: unknown): ChatStreamInput => value as ChatStreamInput;

/** Rethrows anything caught as the TRPCError of its SluiceError (one mapping, see errors.ts). */
function rethrow(error: unknown): never {
  throw toTRPCError(error);
}

export function createAppRouter(options: RouterOptions) {
  const t = initTRPC.context<TRPCContext>().create({
    transformer,
    // Never send stack traces, whatever NODE_ENV says.
    isDev: false,
    sse: {
      ping: { enabled: options.ssePingMs > 0, intervalMs: options.ssePingMs || 15_000 },
      client: { reconnectAfterInactivityMs: options.ssePingMs > 0 ? options.ssePingMs * 2 + 5_000 : undefined },
    },
    errorFormatter({ shape, error }) {
      const cause = sluiceCauseOf(error);
      const { stack: _stack, ...data } = shape.data;
      return { ...shape, message: cause?.message ?? shape.message, data: { ...data, sluiceCode: sluiceCodeOf(error, cause) } };
    },
  });

  // Every chat procedure needs a valid credential (when they are on) and counts against its rate limit.
  const authed = t.procedure.use(async ({ ctx, next }) => {
    const owner = await ctx.chat.owner(ctx.credential).catch(rethrow);
    return next({ ctx: { ...ctx, owner } });
  });

  return t.router({
    health: t.procedure.query(() => ({ status: 'ok' as const })),
    chat: t.router({
      // The definition of `chat.stream`. Sluice's server writes this subscription itself on both
      // wires (trpc/sse-producer.ts, trpc/ws-chat-stream.ts), through the same admission and drain
      // loop; tRPC's own adapters run this procedure, and the protocol tests hold Sluice to them.
      stream: t.procedure
        .input(chatStreamInput)
        // Admitted before the subscription starts, as Sluice's own handlers do: a refusal is an
        // error instead of `started`.
        .use(async ({ ctx, input, signal, next }) => {
          const attachment = await ctx.chat.chatStream({ credential: ctx.credential, input, transport: ctx.transport, signal }).catch(rethrow);
          return next({ ctx: { ...ctx, attachment } });
        })
        .subscription(async function* ({ ctx, signal }) {
          const batches = drainBatches({ listener: ctx.attachment.listener, sink: ctx.sink, metrics: ctx.metrics, transport: ctx.transport, signal });
          for await (const batch of batches) for (const { id, event } of batch) yield tracked(id, event);
        }),
      history: authed.input(inputParser(HistoryInput)).query(({ input: { sessionId, ...page }, ctx }) => {
        const read = () => ctx.chat.history(ctx.owner, sessionId, page, ctx.answerTaken);
        return (ctx.answers ? ctx.answers.spend(read, historyChars) : read()).catch(rethrow);
      }),
      cancel: authed
        .input(inputParser(CancelInput))
        .mutation(async ({ input, ctx }) => ({ cancelled: await ctx.chat.cancel(ctx.owner, input.sessionId, input.replyId).catch(rethrow) })),
      // Deletes the session and its history (its running reply, if any, is cancelled first).
      deleteSession: authed
        .input(inputParser(SessionRef))
        .mutation(async ({ input, ctx }) => ({ deleted: await ctx.chat.deleteSession(ctx.owner, input.sessionId).catch(rethrow) })),
    }),
  });
}

export type AppRouter = ReturnType<typeof createAppRouter>;
