import { StringDecoder } from 'node:string_decoder';
import type { Dispatcher } from 'undici';
import { CompletionChunkReader } from './openai-chunks.ts';
import type { ProviderRequest } from './provider.ts';
import { UpstreamConnectionError, UpstreamHttpError, UpstreamStreamFault } from './upstream-errors.ts';
import { Watchdog } from './watchdog.ts';

// One streamed chat completion call, through undici's `request` on the provider's keep-alive pool.
// It yields content deltas and throws what went wrong (our UpstreamStreamFault, UpstreamHttpError,
// UpstreamConnectionError, or the body's own error when the connection breaks mid-reply); the
// caller classifies and retries. Whatever ends it, no request stays open: a reply read to its end
// leaves its connection to the pool, anything else aborts the request, which closes the connection.

export interface UpstreamEndpoint {
  readonly dispatcher: Dispatcher;
  /** The chat completions path on the dispatcher's origin (`/v1/chat/completions`). */
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
}

export interface CallLimits {
  /** Limit from the request until the first token (0: none). */
  readonly firstTokenTimeoutMs: number;
  /** Limit between chunks once tokens flow (0: none). */
  readonly stallTimeoutMs: number;
}

/** Most of an error body that is read for the logs; the rest is not waited for. */
const MAX_ERROR_BODY_CHARS = 8192;

/** The abort reason when the call is left (its consumer stopped, or it failed): no DOMException to make. */
const LEFT = new Error('upstream call left');

/** The upstream's own message from an error body (OpenAI's `{"error": {"message": ...}}`), or its text. */
async function errorDetail(body: Dispatcher.ResponseData['body']): Promise<string> {
  let text = '';
  // undici's body hands out Buffers whatever setEncoding says; a character may span two of them.
  const decoder = new StringDecoder('utf8');
  try {
    for await (const part of body as AsyncIterable<Buffer>) {
      text += decoder.write(part);
      if (text.length > MAX_ERROR_BODY_CHARS) break; // leaving the loop destroys the body
    }
  } catch {
    // Cut short (by our watchdog, say): what arrived is the detail.
  }
  try {
    const message = (JSON.parse(text) as { error?: { message?: unknown } } | null)?.error?.message;
    if (typeof message === 'string') return message;
  } catch {
    // Not JSON: the text itself.
  }
  return text.slice(0, MAX_ERROR_BODY_CHARS);
}

export async function* streamCompletion(endpoint: UpstreamEndpoint, body: string, request: ProviderRequest, limits: CallLimits): AsyncGenerator<string> {
  const { signal } = request;
  signal.throwIfAborted();
  const controller = new AbortController();
  const onAbort = (): void => controller.abort(signal.reason);
  signal.addEventListener('abort', onAbort, { once: true });
  const watchdog = new Watchdog(limits.firstTokenTimeoutMs, limits.stallTimeoutMs, (fault) => controller.abort(new UpstreamStreamFault(fault)));
  let complete = false;
  try {
    let response: Dispatcher.ResponseData;
    try {
      response = await endpoint.dispatcher.request({ path: endpoint.path, method: 'POST', headers: endpoint.headers, body, signal: controller.signal });
    } catch (error) {
      if (watchdog.fired) throw new UpstreamStreamFault(watchdog.fired);
      if (signal.aborted) throw error;
      throw new UpstreamConnectionError(error);
    }
    if (response.statusCode !== 200) throw new UpstreamHttpError(response.statusCode, response.headers, await errorDetail(response.body));
    const reader = new CompletionChunkReader(() => watchdog.chunkArrived(), request.reportUsage && ((usage) => request.reportUsage?.(usage)));
    const decoder = new StringDecoder('utf8');
    for await (const bytes of response.body as AsyncIterable<Buffer>) {
      for (const delta of reader.feed(decoder.write(bytes))) {
        watchdog.tokenArrived();
        yield delta;
      }
      reader.check();
    }
    complete = true;
    if (watchdog.fired) throw new UpstreamStreamFault(watchdog.fired);
    signal.throwIfAborted();
    if (!reader.finished) throw new UpstreamStreamFault('ended_early', 'stream ended without a finish_reason');
  } catch (error) {
    // An abort by our watchdog surfaces as the body's error: name the real reason (an error status
    // whose body was cut short by it stays what it was).
    if (watchdog.fired && !(error instanceof UpstreamStreamFault || error instanceof UpstreamHttpError) && !signal.aborted) {
      throw new UpstreamStreamFault(watchdog.fired);
    }
    throw error;
  } finally {
    watchdog.dispose();
    signal.removeEventListener('abort', onAbort);
    if (!complete) controller.abort(LEFT);
  }
}
