/**
 * `useChatStream`, a React hook over the typed client (`sluice-client/react`): a session's
 * history, then each turn as it streams, with send and stop. Thin on purpose: state for one session,
 * nothing else; the client (transport, credentials) is the app's, made once with createChatClient.
 */
import { useCallback, useEffect, useRef, useState } from 'react';
import type { ChatMessage } from '../shared/messages.ts';
import type { ChatClient } from './create-chat-client.ts';
import { streamChat } from './stream-chat.ts';

/** A message as the page shows it: a stored one, or the reply still streaming. */
export interface ChatStreamMessage {
  readonly role: ChatMessage['role'];
  readonly content: string;
  readonly status: ChatMessage['status'] | 'streaming';
}

export interface ChatStream {
  readonly messages: readonly ChatStreamMessage[];
  /** `loading` the history; `ready` for a message; `streaming` a reply; `error`: see `error`. */
  readonly status: 'loading' | 'ready' | 'streaming' | 'error';
  /** Why the last call failed (a refused message, an unreachable server); undefined after a success. */
  readonly error: Error | undefined;
  /** Sends a message (ignored while a reply streams; while the history loads, sent once it has). */
  readonly send: (message: string) => void;
  /**
   * Stops the streaming reply: the server cancels it and keeps the partial as `interrupted`. (So
   * does unmounting, or another session id.)
   */
  readonly stop: () => void;
}

const STOPPED: Readonly<Record<string, ChatMessage['status']>> = { cancelled: 'interrupted', interrupted: 'interrupted' };

export function useChatStream(client: ChatClient, sessionId: string): ChatStream {
  const [messages, setMessages] = useState<readonly ChatStreamMessage[]>([]);
  const [status, setStatus] = useState<ChatStream['status']>('loading');
  const [error, setError] = useState<Error | undefined>();
  const running = useRef<AbortController | undefined>(undefined);
  // The session the state is for now: a turn left behind (another session id, an unmount) ends on
  // the server, and writes nothing more into the state, which is the next session's.
  const shown = useRef<object | undefined>(undefined);
  // A message sent while the session's history loads (a "new chat" that sends at once) is sent once
  // it has loaded: the history would otherwise replace the turn under way.
  // Both per session: a component's effect can send for the new session before this hook's effect
  // has run for it (children's effects run first).
  const loadedFor = useRef<string | undefined>(undefined);
  const queued = useRef<{ readonly sessionId: string; readonly message: string } | undefined>(undefined);
  const sendNow = useRef<(message: string) => void>(() => undefined);

  useEffect(() => {
    const controller = new AbortController();
    shown.current = controller;
    loadedFor.current = undefined;
    if (queued.current?.sessionId !== sessionId) queued.current = undefined;
    setStatus('loading');
    setMessages([]);
    client.chat.history.query({ sessionId }, { signal: controller.signal }).then(
      (history) => {
        if (controller.signal.aborted) return;
        setMessages(history.messages.map(({ role, content, status: stored }) => ({ role, content, status: stored })));
        setError(undefined);
        setStatus('ready');
        loadedFor.current = sessionId;
        const waiting = queued.current;
        queued.current = undefined;
        if (waiting?.sessionId === sessionId) sendNow.current(waiting.message);
      },
      (cause: unknown) => {
        if (controller.signal.aborted) return;
        setError(asError(cause));
        setStatus('error');
        // The load is over: a message sent from now on goes at once (the server may be back), and
        // one sent while it loaded is not kept for a load that will not come.
        loadedFor.current = sessionId;
        queued.current = undefined;
      },
    );
    return () => {
      controller.abort();
      running.current?.abort();
      running.current = undefined;
    };
  }, [client, sessionId]);

  const send = useCallback(
    (message: string): void => {
      if (running.current) return;
      if (loadedFor.current !== sessionId) {
        if (queued.current?.sessionId !== sessionId) queued.current = { sessionId, message };
        return;
      }
      const controller = new AbortController();
      running.current = controller;
      const session = shown.current;
      const current = (): boolean => shown.current === session;
      setError(undefined);
      setStatus('streaming');
      // The reply is the last message until the turn ends.
      const update = (change: (reply: ChatStreamMessage) => ChatStreamMessage): void => {
        if (current()) setMessages((all) => [...all.slice(0, -1), change(all[all.length - 1]!)]);
      };
      setMessages((all) => [...all, { role: 'user', content: message, status: 'complete' }, { role: 'assistant', content: '', status: 'streaming' }]);
      void (async () => {
        try {
          for await (const event of streamChat(client, { message, sessionId, signal: controller.signal })) {
            if (event.type === 'delta') update((reply) => ({ ...reply, content: reply.content + event.delta }));
            else if (event.type === 'done') update((reply) => ({ ...reply, status: 'complete' }));
            else update((reply) => ({ ...reply, status: STOPPED[event.code] ?? 'failed' }));
          }
          if (controller.signal.aborted) update((reply) => ({ ...reply, status: 'interrupted' }));
          if (current()) setStatus('ready');
        } catch (cause) {
          if (!current()) return;
          // Refused before any token (busy session, bad input, credential): nothing was stored.
          setMessages((all) => all.slice(0, -2));
          setError(asError(cause));
          setStatus('error');
        } finally {
          if (running.current === controller) running.current = undefined;
        }
      })();
    },
    [client, sessionId],
  );
  sendNow.current = send;

  const stop = useCallback((): void => running.current?.abort(), []);
  return { messages, status, error, send, stop };
}

const asError = (cause: unknown): Error => (cause instanceof Error ? cause : new Error(String(cause)));
