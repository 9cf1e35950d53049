import { initTRPC, tracked } from '@trpc/server';
import superjson from 'superjson';
import { ChatStreamInput, SessionRef } from '../../../shared/chat-request.ts';
import { DEFAULT_SESSION_ID } from '../../../shared/session.ts';
import { SluiceError } from '../../core/errors.ts';
import type { TRPCContext } from './context.ts';
import { toTRPCError } from './errors.ts';

export interface RouterOptions {
  /** Interval of tRPC's SSE `ping` events (0: none). */
  readonly ssePingMs: number;
}

export function createAppRouter(options: RouterOptions) {
  const t = initTRPC.context<TRPCContext>().create({
    transformer: superjson,
    // Never send stack traces, whatever NODE_ENV says.
    isDev: false,
    sse: {
      ping: { enabled: options.ssePingMs > 0, intervalMs: options.ssePingMs || 15_000 },
      client: { reconnectAfterInactivityMs: options.ssePingMs > 0 ? options.ssePingMs * 2 + 5_000 : undefined },
    },
    errorFormatter({ shape, error }) {
      const cause = error.cause instanceof SluiceError ? error.cause : undefined;
      return { ...shape, data: { ...shape.data, stack: undefined, sluiceCode: cause?.code ?? null } };
    },
  });

  return t.router({
    health: t.procedure.query(() => ({ status: 'ok' as const })),
    chat: t.router({
      stream: t.procedure.input(ChatStreamInput).subscription(async function* ({ input, ctx, signal }) {
        const { service, owner } = ctx;
        let attachment;
        try {
          attachment = input.lastEventId
            ? await service.attach(owner, input.lastEventId, signal)
            : await service.start(
                { owner, sessionId: input.sessionId ?? DEFAULT_SESSION_ID, message: input.message, transport: ctx.transport },
                signal,
              );
        } catch (error) {
          throw toTRPCError(error);
        }
        const { listener } = attachment;
        try {
          for await (const { id, event } of listener) yield tracked(id, event);
        } finally {
          listener.close();
        }
      }),
      history: t.procedure.input(SessionRef).query(async ({ input, ctx }) => {
        try {
          return await ctx.service.history(ctx.owner, input.sessionId);
        } catch (error) {
          throw toTRPCError(error);
        }
      }),
      cancel: t.procedure.input(SessionRef).mutation(async ({ input, ctx }) => {
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
