import type { ReplyEvent } from '../shared/stream-events.ts';
import { DEFAULT_SESSION_ID } from '../shared/session-id.ts';
import type { ChatClient } from './create-chat-client.ts';

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
}

/**
 * Streams one reply as an async iterable of events, ending after `done` or `error`. Leaving early
 * (abort, or `break`) cancels the reply on the server; a dropped connection is resumed by the links.
 */
export async function* streamChat(client: ChatClient, request: StreamChatRequest): AsyncGenerator<ReplyEvent> {
  const sessionId = request.sessionId ?? DEFAULT_SESSION_ID;
  const { signal } = request;
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

  let connected = false;
  let dropped = false;
  const subscription = client.chat.stream.subscribe(
    { message: request.message, sessionId },
    {
      onConnectionStateChange: ({ state, error }) => {
        if (state === 'pending') {
          connected = true;
          if (dropped) {
            dropped = false;
            request.onConnection?.('resumed');
          }
        } else if (state === 'connecting' && connected && !finished) {
          connected = false;
          dropped = true;
          request.onConnection?.('lost', error ?? undefined);
        }
      },
      onData: ({ data }) => {
        // `start` only gives the links an id to resume from: it is not part of the reply.
        if (data.type === 'start') return;
        queue.push(data);
        notify();
      },
      onError: (error) => {
        failure = error;
        finished = true;
        notify();
      },
      onComplete: () => {
        finished = true;
        notify();
      },
    },
  );
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
      if (failure !== undefined) {
        ended = true;
        throw failure;
      }
      if (finished) return;
      await new Promise<void>((resolve) => (wake = resolve));
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
    subscription.unsubscribe();
    // Leaving before the end means the caller no longer wants this reply.
    if (!ended) await client.chat.cancel.mutate({ sessionId }).catch(() => undefined);
  }
}
