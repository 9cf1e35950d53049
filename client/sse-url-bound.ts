import { TRPCClientError, type TRPCLink } from '@trpc/client';
import { observable } from '@trpc/server/observable';
import superjson from 'superjson';
import type { AppRouter } from '../shared/app-router.ts';

/**
 * Characters of a subscription's input, once in its URL, that an SSE request may carry. Over SSE
 * the input travels in the URL's query (EventSource sends no body), and servers take about 16 KB of
 * request line and headers (Node's limit; the documented nginx's buffers): this leaves room for
 * the credential (`connectionParams`, a token of a kilobyte or two) and the other headers.
 */
export const MAX_SSE_INPUT_URL_CHARS = 12_000;

/**
 * Refuses, before anything is sent, a subscription whose input would not fit in an SSE request's
 * URL (a long message, or a few thousand characters of non-Latin text: each takes up to 9 once
 * encoded), with a message that says so; the server would answer a bare 431.
 */
export function sseUrlBound(): TRPCLink<AppRouter> {
  return () =>
    ({ op, next }) =>
      observable((observer) => {
        const chars = encodeURIComponent(JSON.stringify(superjson.serialize(op.input))).length;
        if (chars > MAX_SSE_INPUT_URL_CHARS) {
          observer.error(
            TRPCClientError.from(
              new Error(
                `message: too long to send over SSE (${chars} characters once in the URL, at most ${MAX_SSE_INPUT_URL_CHARS}): shorten it, or use the WebSocket transport`,
              ),
            ),
          );
          return undefined;
        }
        return next(op).subscribe(observer);
      });
}
