import { retryLink, type TRPCLink } from '@trpc/client';
import type { AppRouter } from '../shared/app-router.ts';
import { deliveredTries } from './delivered.ts';

// A reply that has started is resumed on a new connection after a drop; the server may refuse that
// connection for a while as `rate_limited` (past MAX_WS_CONNECTIONS_PER_KEY while the connection
// that dropped still holds its place, until its keep-alive lets it go; past MAX_STREAMS_PER_KEY
// while the old stream is still counted). That refusal is passing: the stream is resumed from its
// last event again after a pause, within the caller's giveUpAfterMs, instead of ending the reply.

/** Resumes tried, and the pause before each (doubling from 250 ms to 4 s: about 30 s in all). */
const RESUMES = 10;
const pauseMs = (attempt: number): number => Math.min(250 * 2 ** (attempt - 1), 4_000);

export function resumeRefusedStreams(): TRPCLink<AppRouter>[] {
  // The tries that delivered data: a stream that started.
  const { link: progress, delivered } = deliveredTries();
  const resumed = (op: { input: unknown }): boolean =>
    op.input !== null && typeof op.input === 'object' && (op.input as { lastEventId?: unknown }).lastEventId !== undefined;
  return [
    retryLink<AppRouter>({
      retry: ({ op, error, attempts }) =>
        op.type === 'subscription' && error.data?.code === 'TOO_MANY_REQUESTS' && (delivered.has(op) || resumed(op)) && attempts <= RESUMES,
      retryDelayMs: pauseMs,
    }),
    progress,
  ];
}
