/**
 * A `fetch` for the AI SDK's `DefaultChatTransport` pointed at Sluice's `/v1/ui/chat`, so that
 * `useChat`'s `stop()` stops the reply on the server, a resumed one too:
 *
 * ```ts
 * new DefaultChatTransport({ api: 'http://localhost:8000/v1/ui/chat', fetch: uiChatFetch() })
 * ```
 *
 * `stop()` only aborts the request, and a closed stream is also what a reload looks like: the
 * server keeps the reply running for the resume window, for the reloaded page to resume. So when a
 * request is aborted, this sends `POST <api>/{chatId}/stop` (with the request's headers, so its
 * credentials) — unless the abort was `useChat` replacing a resume request with a newer one for
 * the same chat (a second `resumeStream()`), or came before the request was sent (React's strict
 * mode resumes twice on mount): neither is a stop. A page that unloads does not abort its
 * requests' signals, so a reload never sends it. The server answers the stop once the reply has
 * ended, and the chat's next request waits for that answer, so that a message sent right after
 * `stop()` does not find the session busy.
 *
 * `base` is the fetch to send with (default: the global one).
 */
export function uiChatFetch(base?: typeof fetch): typeof fetch {
  const send: typeof fetch = base ?? ((input, init) => globalThis.fetch(input, init));
  /** The newest resume request of each chat (resume requests only, for the superseded check). */
  const resuming = new Map<string, object>();
  /** Stops on their way, by chat: the chat's next request goes out after them. */
  const stopping = new Map<string, Promise<unknown>>();

  return async (input, init) => {
    const target = stopTarget(input, init);
    if (!target) return send(input, init);
    const { chatId } = target;
    const token = {};
    // Known from the call on: the abort of the resume request this one replaces is looked at later.
    if (target.resume) resuming.set(chatId, token);
    const signal = init?.signal ?? undefined;
    const release = (): void => {
      signal?.removeEventListener('abort', onAbort);
      if (resuming.get(chatId) === token) resuming.delete(chatId);
    };
    const stop = (): void => {
      const sent = send(target.stopUrl, { method: 'POST', headers: init?.headers, credentials: init?.credentials }).catch(() => undefined);
      const done = sent.finally(() => {
        if (stopping.get(chatId) === done) stopping.delete(chatId);
      });
      stopping.set(chatId, done);
    };
    const onAbort = (): void => {
      if (!target.resume) {
        stop();
        return;
      }
      // useChat aborts a resume request when it starts a newer one for the chat, a few microtasks
      // before calling fetch for it: a turn later the newer one is known.
      setTimeout(() => {
        if (resuming.get(chatId) !== token) return;
        resuming.delete(chatId);
        stop();
      }, 0);
    };

    await stopping.get(chatId);
    // Aborted before it was sent (React's strict mode resumes twice on mount, aborting the first
    // before its fetch): it started nothing to stop.
    if (!signal || signal.aborted) {
      try {
        return await send(input, init);
      } finally {
        release();
      }
    }
    signal.addEventListener('abort', onAbort, { once: true });

    let response: Response;
    try {
      response = await send(input, init);
    } catch (error) {
      // An abort is acted on by its listener; anything else ends the request here.
      if (!signal.aborted) release();
      throw error;
    }
    // 204: no reply runs (a resume that found nothing). Browsers give it an empty body, which a
    // new Response of that status may not have.
    if (!response.ok || !response.body || response.status === 204) {
      release();
      return response;
    }
    // Once the reply has been read to its end, an abort is no longer a stop of it (it could only
    // stop the chat's next reply).
    const body = response.body.pipeThrough(new TransformStream<Uint8Array, Uint8Array>({ flush: release }));
    return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
  };
}

interface StopTarget {
  readonly chatId: string;
  readonly stopUrl: string;
  /** A resume request (`GET .../{chatId}/stream`) rather than a new message. */
  readonly resume: boolean;
}

/** The chat a transport request belongs to, and where to stop its reply; undefined for other requests. */
function stopTarget(input: RequestInfo | URL, init: RequestInit | undefined): StopTarget | undefined {
  const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
  const path = url.split(/[?#]/, 1)[0]!;
  const method = (init?.method ?? 'GET').toUpperCase();
  if (method === 'GET') {
    const match = /\/([^/]+)\/stream$/.exec(path);
    if (!match) return undefined;
    return { chatId: decodeURIComponent(match[1]!), stopUrl: `${path.slice(0, -'/stream'.length)}/stop`, resume: true };
  }
  if (method !== 'POST' || typeof init?.body !== 'string') return undefined;
  let chatId: unknown;
  try {
    chatId = (JSON.parse(init.body) as { id?: unknown }).id;
  } catch {
    return undefined;
  }
  if (typeof chatId !== 'string' || chatId.length === 0) return undefined;
  return { chatId, stopUrl: `${path.replace(/\/$/, '')}/${encodeURIComponent(chatId)}/stop`, resume: false };
}
