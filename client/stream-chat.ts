import type { ReplyEvent } from '../shared/stream-events.ts';
import { DEFAULT_SESSION_ID } from '../shared/session-id.ts';
import type { ChatClient } from './create-chat-client.ts';
import { within } from '../shared/within.ts';
import { clientRefusal } from './refusal.ts';

export interface StreamChatRequest {
  readonly message: string;
  readonly sessionId?: string;
  /** Aborting ends the iteration and cancels the reply on the server. */
  readonly signal?: AbortSignal;
  /**
   * Called when the connection carrying the reply drops (`'lost'`: the links reconnect and resume
   * from the last event by themselves) and when the reply is flowing again (`'resumed'`).
   */
  readonly onConnection?: (state: 'lost' | 'resumed', error?: unknown) => void;
  /**
   * How long a dropped connection may stay lost before the reply is given up: it then ends with an
   * `unavailable` error event (with the text so far), or the call throws if the reply had not
   * started; a server that cannot be reached from the start counts too. Default 60 s (longer than
   * servers usually keep a reply nobody follows: their RESUME_GRACE_MS, 5 s by default);
   * `Infinity` (or anything beyond a timer's 24.8 days) waits for the server however long it takes.
   */
  readonly giveUpAfterMs?: number;
}

/** See StreamChatRequest.giveUpAfterMs. */
export const DEFAULT_GIVE_UP_AFTER_MS = 60_000;
/** The longest delay a timer holds (about 24.8 days): longer ones would fire at once. */
const MAX_TIMER_MS = 2_147_483_647;

/**
 * Streams one reply as an async iterable of events, ending after `done` or `error`. Leaving early
 * (abort, or `break`) cancels the reply on the server; a dropped connection is resumed by the links.
 */
export async function* streamChat(client: ChatClient, request: StreamChatRequest): AsyncGenerator<ReplyEvent> {
  const sessionId = request.sessionId ?? DEFAULT_SESSION_ID;
  const { signal } = request;
  const giveUpAfterMs = request.giveUpAfterMs ?? DEFAULT_GIVE_UP_AFTER_MS;
  if (!(giveUpAfterMs > 0)) throw new RangeError(`streamChat: giveUpAfterMs must be a positive number of milliseconds, got ${giveUpAfterMs}`);
  signal?.throwIfAborted();
  const queue: ReplyEvent[] = [];
  let failure: unknown;
  let finished = false;
  let wake: (() => void) | undefined;
  const notify = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  // The server's id for this reply (its `start` event), and the text it has sent so far.
  let replyId: string | undefined;
  let text = '';
  let known: () => void = () => undefined;
  /** Settles once this call's reply has started, or will not (refused, or the subscription ended). */
  const startKnown = new Promise<void>((resolve) => (known = resolve));

  let connected = false;
  let dropped = false;
  let gaveUp = false;
  let giveUpTimer: ReturnType<typeof setTimeout> | undefined;
  // Armed while there is no connection: from the start (a server never reached) and after each drop.
  const armGiveUp = (): void => {
    clearTimeout(giveUpTimer);
    if (giveUpAfterMs > MAX_TIMER_MS) return;
    giveUpTimer = setTimeout(() => {
      gaveUp = true;
      finished = true;
      known();
      notify();
    }, giveUpAfterMs);
  };
  const subscription = client.chat.stream.subscribe(
    { message: request.message, sessionId },
    {
      onConnectionStateChange: ({ state, error }) => {
        if (state === 'pending') {
          connected = true;
          clearTimeout(giveUpTimer);
          if (dropped) {
            dropped = false;
            request.onConnection?.('resumed');
          }
        } else if (state === 'connecting' && connected && !finished) {
          connected = false;
          dropped = true;
          armGiveUp();
          request.onConnection?.('lost', error ?? undefined);
        }
      },
      onData: ({ data }) => {
        // `start` only names the reply (for a resume, and for a cancel of this reply alone): it is not part of it.
        if (data.type === 'start') {
          replyId = data.replyId;
          known();
          return;
        }
        if (data.type === 'delta') text += data.delta;
        queue.push(data);
        notify();
      },
      onError: (error) => {
        failure = error;
        finished = true;
        known();
        notify();
      },
      onComplete: () => {
        finished = true;
        known();
        notify();
      },
    },
  );
  if (!connected) armGiveUp();
  const onAbort = (): void => {
    finished = true;
    notify();
  };
  signal?.addEventListener('abort', onAbort, { once: true });

  let ended = false;
  try {
    while (true) {
      while (queue.length > 0 && !signal?.aborted) {
        const event = queue.shift()!;
        if (event.type !== 'delta') ended = true;
        yield event;
        if (ended) return;
      }
      if (signal?.aborted) return;
      if (gaveUp) {
        ended = true;
        const message =
          replyId === undefined && !dropped
            ? `The server could not be reached for ${Math.round(giveUpAfterMs / 1000)} s`
            : `The connection to the server stayed lost for ${Math.round(giveUpAfterMs / 1000)} s`;
        // A reply that started has its turn stored: it ends; one that had not was never sent.
        if (replyId !== undefined) {
          yield { type: 'error', code: 'unavailable', message, partial: text };
          return;
        }
        throw clientRefusal('unavailable', message);
      }
      if (failure !== undefined) {
        ended = true;
        // Once the reply has started its turn is stored: a failure now (the server lost the reply
        // and cannot resume it, say) ends the reply, it does not refuse the message.
        if (replyId !== undefined) {
          // A credential refused on the way back is the app's to renew (signed out, say), not a lost reply.
          const code = codeOf(failure) === 'UNAUTHORIZED' ? 'unauthorized' : 'interrupted';
          yield { type: 'error', code, message: `The reply could not be resumed: ${messageOf(failure)}`, partial: text };
          return;
        }
        throw failure;
      }
      if (finished) return;
      await new Promise<void>((resolve) => (wake = resolve));
    }
  } finally {
    clearTimeout(giveUpTimer);
    signal?.removeEventListener('abort', onAbort);
    // Leaving before the end means the caller no longer wants this reply: it is cancelled, and only
    // it (the session may be running another client's). Left before it was known to have started,
    // the subscription stays until the server says, in the background.
    if (ended) subscription.unsubscribe();
    else if (replyId !== undefined) {
      // The cancel is waited for (briefly) while the connection is up, so that a caller reading
      // history next finds the reply ended; not while it is lost: Stop ends the loop now, and the
      // cancel goes when the connection is back.
      const cancelling = leave(client, subscription, sessionId, replyId);
      if (connected) await within(cancelling, LEAVE_WAIT_MS, () => undefined, { unref: true });
    } else void within(startKnown, START_WAIT_MS, () => undefined, { unref: true }).then(() => leave(client, subscription, sessionId, replyId));
  }
}

/** How long a call left before its reply started waits for the server to say whether it did. */
const START_WAIT_MS = 10_000;
/** How long leaving a started reply waits for its cancel to be answered. */
const LEAVE_WAIT_MS = 5_000;

async function leave(client: ChatClient, subscription: { unsubscribe(): void }, sessionId: string, replyId: string | undefined): Promise<void> {
  subscription.unsubscribe();
  if (replyId !== undefined) await client.chat.cancel.mutate({ sessionId, replyId }).catch(() => undefined);
}

function codeOf(error: unknown): unknown {
  return (error as { data?: { code?: unknown } } | null)?.data?.code;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
