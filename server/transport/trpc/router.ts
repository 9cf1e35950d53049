import { initTRPC, tracked, TRPCError } from '@trpc/server';
import { transformer } from './transformer.ts';
import { ChatStreamInput, SessionRef } from '../../../shared/chat-request.ts';
import { SluiceError } from '../../core/errors.ts';
import type { TRPCContext } from './context.ts';
import { toTRPCError } from './errors.ts';
import { openStream } from '../open-stream.ts';

export interface RouterOptions {
  /** Interval of tRPC's SSE `ping` events (0: none). */
  readonly ssePingMs: number;
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
      const cause = error.cause instanceof SluiceError ? error.cause : undefined;
      const { stack: _stack, ...data } = shape.data;
      return { ...shape, data: { ...data, sluiceCode: cause?.code ?? null } };
    },
  });

  // Every chat procedure needs a valid key (when keys are on) and counts against the key's rate limit.
  const authed = t.procedure.use(async ({ ctx, next }) => {
    if (!ctx.owner) throw new TRPCError({ code: 'UNAUTHORIZED', message: 'A valid API key is required' });
    try {
      await ctx.checkRate(ctx.owner);
    } catch (error) {
      throw toTRPCError(error);
    }
    return next({ ctx: { ...ctx, owner: ctx.owner } });
  });

  return t.router({
    health: t.procedure.query(() => ({ status: 'ok' as const })),
    chat: t.router({
      // The definition of `chat.stream` (its input, events and checks). Sluice's server writes this
      // subscription itself on the wire (trpc-sse-route.ts, ws-chat-stream.ts: same checks, same
      // messages, a fraction of the cost); this generator is what tRPC's own adapters would run,
      // and what test/trpc-ws-protocol.test.ts holds Sluice's handler to.
      stream: authed.input(ChatStreamInput).subscription(async function* ({ input, ctx, signal }) {
        const { service, owner, sink } = ctx;
        let attachment;
        try {
          attachment = await openStream(
            service,
            { owner, message: input.message, sessionId: input.sessionId, lastEventId: input.lastEventId, transport: ctx.transport },
            signal,
          );
        } catch (error) {
          throw toTRPCError(error);
        }
        const { listener } = attachment;
        let sent = 0;
        ctx.metrics.streamOpened(ctx.transport);
        try {
          for await (const { id, event } of listener) {
            // A reader that cannot keep up is waited for, and cut off after the send timeout.
            if (!sink.hasRoom() && !(await sink.ready(signal))) break;
            sent++;
            yield tracked(id, event);
          }
        } finally {
          ctx.metrics.streamClosed(ctx.transport, sent);
          listener.close();
        }
      }),
      history: authed.input(SessionRef).query(async ({ input, ctx }) => {
        try {
          return await ctx.service.history(ctx.owner, input.sessionId);
        } catch (error) {
          throw toTRPCError(error);
        }
      }),
      cancel: authed.input(SessionRef).mutation(async ({ input, ctx }) => {
        try {
          return { cancelled: await ctx.service.cancel(ctx.owner, input.sessionId) };
        } catch (error) {
          throw toTRPCError(error);
        }
      }),
    }),
  });
}

export type AppRouter = ReturnType<typeof createAppRouter>;
