import type { TRPCLink } from '@trpc/client';
import { observable } from '@trpc/server/observable';
import type { AppRouter } from '../shared/app-router.ts';
import { statusRefusal } from './refusal.ts';

/**
 * A subscription the server refused before tRPC read it (its origin policy's 403) reaches the app
 * typed, as a query refused alike does: an EventSource reads no body of a refusal, and tRPC passes
 * on only its own words for it ("Non-200 status code (403)"). Only where the EventSource says the
 * status (the `eventsource` package in Node); a browser tells a page nothing of it.
 */
export function sseRefusals(): TRPCLink<AppRouter> {
  return () =>
    ({ op, next }) =>
      observable((observer) =>
        next(op).subscribe({
          next: (value) => observer.next(value),
          error: (error) => {
            const status = error.data === undefined ? /^Non-200 status code \((\d{3})\)$/.exec(error.message)?.[1] : undefined;
            observer.error((status !== undefined && statusRefusal(status, 'stream')) || error);
          },
          complete: () => observer.complete(),
        }),
      );
}
