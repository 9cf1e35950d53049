import { TRPCClientError, type TRPCLink } from '@trpc/client';
import { observable } from '@trpc/server/observable';
import superjson from 'superjson';
import type { AppRouter } from '../shared/app-router.ts';
import { clientRefusal } from './refusal.ts';

/**
 * Characters of a subscription's input and credential (`connectionParams`), once in its URL, that
 * an SSE request may carry. Over SSE both travel in the URL's query (EventSource sends no body nor
 * headers of its own), and servers take about 16 KB of request line and headers (Node's limit; the
 * documented nginx's buffers): this leaves room for the path and the browser's headers.
 */
export const MAX_SSE_QUERY_CHARS = 14_000;
/**
 * The most a credential takes of the URL: servers refuse tokens over 8,192 characters (API keys
 * are shorter still). An input that fits with this much beside it needs no look at the credential.
 */
const MAX_CREDENTIAL_URL_CHARS = 9_000;

/**
 * Refuses, before anything is sent, a subscription whose input would not fit in an SSE request's
 * URL (a long message, or a few thousand characters of non-Latin text: each takes up to 9 once
 * encoded), with a message that says so; the server would answer a bare 431.
 */
export function sseUrlBound(params?: () => Promise<Record<string, string>>): TRPCLink<AppRouter> {
  const encoded = (value: unknown): number => encodeURIComponent(JSON.stringify(value)).length;
  const tooLong = (chars: number): TRPCClientError<AppRouter> =>
    clientRefusal(
      'invalid_request',
      `message: too long to send over SSE (${chars} characters once in the URL with the credential, at most ${MAX_SSE_QUERY_CHARS}): shorten it, or use the WebSocket transport`,
    );
  return () =>
    ({ op, next }) =>
      observable((observer) => {
        const input = encoded(superjson.serialize(op.input));
        // No credential, or room for the largest one (every usual message): decided now, without
        // asking for the credential a second time (the link asks for it to build the URL, and
        // getToken may cost a round trip).
        if (!params || input + MAX_CREDENTIAL_URL_CHARS <= MAX_SSE_QUERY_CHARS) {
          if (input <= MAX_SSE_QUERY_CHARS) return next(op).subscribe(observer);
          observer.error(tooLong(input));
          return undefined;
        }
        let inner: { unsubscribe(): void } | undefined;
        let stopped = false;
        void params()
          .then(encoded, () => 0)
          .then((credential) => {
            if (stopped) return;
            if (input + credential > MAX_SSE_QUERY_CHARS) observer.error(tooLong(input + credential));
            else inner = next(op).subscribe(observer);
          });
        return () => {
          stopped = true;
          inner?.unsubscribe();
        };
      });
}
