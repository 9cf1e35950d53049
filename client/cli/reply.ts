import type { ChatClient } from '../create-chat-client.ts';
import { ReplyTimer, type ReplyStats } from '../reply-stats.ts';
import { streamChat } from '../stream-chat.ts';

export type ReplyOutcome =
  | { readonly kind: 'complete'; readonly stats: ReplyStats }
  /** An `error` event after the reply started (other than a cancel). */
  | { readonly kind: 'failed'; readonly code: string; readonly message: string; readonly stats: ReplyStats }
  /** Stopped by the user (`by: 'user'`), or cancelled/interrupted on the server's side. */
  | { readonly kind: 'cancelled'; readonly by: 'user' | 'server'; readonly code: string; readonly stats: ReplyStats }
  /** Refused before any token (session busy, bad input, auth, limits). */
  | { readonly kind: 'refused'; readonly code: string; readonly message: string }
  /** The server could not be reached, or the connection stayed down too long. */
  | { readonly kind: 'connection'; readonly message: string; readonly stats: ReplyStats };

export interface ReplyHooks {
  /** Each piece of reply text, as it arrives. */
  text(delta: string): void;
  /** The connection carrying the reply dropped, or is back (the reply then resumes). */
  connection(state: 'lost' | 'resumed'): void;
}

export interface ReplyRequest {
  readonly message: string;
  readonly sessionId: string;
  /** Abort to stop the reply; it is cancelled on the server. */
  readonly signal: AbortSignal;
  /** Give up when the connection stays lost this long (undefined: wait for it forever). */
  readonly giveUpAfterMs?: number;
}

/** How long to wait for the server to confirm a cancel before returning anyway. */
const CANCEL_WAIT_MS = 3000;

interface ErrorWithData {
  readonly message: string;
  readonly data?: { readonly sluiceCode?: string | null; readonly code?: string } | null;
  readonly cause?: unknown;
}

/** The code of an error the server answered, or undefined when it never answered (a network failure). */
function serverCode(error: unknown): string | undefined {
  const data = (error as ErrorWithData | undefined)?.data;
  return data ? (data.sluiceCode ?? data.code) : undefined;
}

/** Why a request never got an answer: the socket error's code (ECONNREFUSED, ...) when there is one. */
export function networkReason(error: unknown): string {
  const e = error as ErrorWithData;
  const cause = e?.cause as { message?: string; cause?: { code?: string; message?: string } } | undefined;
  return cause?.cause?.code ?? cause?.cause?.message ?? cause?.message ?? e?.message ?? String(error);
}

/** Sends one message and streams its reply into `hooks`, measuring it; never throws for server or network failures. */
export async function runReply(client: ChatClient, request: ReplyRequest, hooks: ReplyHooks): Promise<ReplyOutcome> {
  const timer = new ReplyTimer();
  const stop = new AbortController();
  let gaveUp = false;
  let giveUpTimer: ReturnType<typeof setTimeout> | undefined;
  const onAbort = (): void => stop.abort();
  request.signal.addEventListener('abort', onAbort, { once: true });
  if (request.signal.aborted) stop.abort();

  const consume = async (): Promise<ReplyOutcome> => {
    try {
      const events = streamChat(client, {
        message: request.message,
        sessionId: request.sessionId,
        signal: stop.signal,
        // The CLI gives up by itself (giveUpAfterMs above, as a `connection` outcome), or never.
        giveUpAfterMs: Infinity,
        onConnection: (state) => {
          hooks.connection(state);
          clearTimeout(giveUpTimer);
          if (state === 'lost' && request.giveUpAfterMs !== undefined) {
            giveUpTimer = setTimeout(() => {
              gaveUp = true;
              stop.abort();
            }, request.giveUpAfterMs);
          }
        },
      });
      for await (const event of events) {
        if (event.type === 'delta') {
          timer.delta();
          hooks.text(event.delta);
        } else if (event.type === 'done') {
          return { kind: 'complete', stats: timer.stats() };
        } else if (event.code === 'cancelled' || event.code === 'interrupted') {
          return { kind: 'cancelled', by: 'server', code: event.code, stats: timer.stats() };
        } else {
          return { kind: 'failed', code: event.code, message: event.message, stats: timer.stats() };
        }
      }
      if (gaveUp) return { kind: 'connection', message: 'the connection stayed lost; gave up', stats: timer.stats() };
      if (stop.signal.aborted) return { kind: 'cancelled', by: 'user', code: 'cancelled', stats: timer.stats() };
      return { kind: 'failed', code: 'internal', message: 'the stream ended before the reply did', stats: timer.stats() };
    } catch (error) {
      const code = serverCode(error);
      if (code) return { kind: 'refused', code, message: (error as Error).message };
      return { kind: 'connection', message: networkReason(error), stats: timer.stats() };
    }
  };

  const consuming = consume();
  // Once stopped, the cancel needs the server; if it cannot be reached, do not wait for it forever.
  let waitTimer: ReturnType<typeof setTimeout> | undefined;
  const stopped = new Promise<ReplyOutcome>((resolve) => {
    const late = (): void => {
      waitTimer = setTimeout(
        () =>
          resolve(
            gaveUp
              ? { kind: 'connection', message: 'the connection stayed lost; gave up', stats: timer.stats() }
              : { kind: 'cancelled', by: 'user', code: 'cancelled', stats: timer.stats() },
          ),
        CANCEL_WAIT_MS,
      );
    };
    if (stop.signal.aborted) late();
    else stop.signal.addEventListener('abort', late, { once: true });
  });
  try {
    return await Promise.race([consuming, stopped]);
  } finally {
    clearTimeout(giveUpTimer);
    clearTimeout(waitTimer);
    request.signal.removeEventListener('abort', onAbort);
  }
}
