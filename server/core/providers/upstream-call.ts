import { StringDecoder } from 'node:string_decoder';
import type { IncomingHttpHeaders } from 'node:http';
import type { Dispatcher } from 'undici';
import { CompletionChunkReader } from './openai-chunks.ts';
import type { ProviderRequest, ProviderYield } from './provider.ts';
import { UpstreamConnectionError, UpstreamHttpError, UpstreamStreamFault } from './upstream-errors.ts';
import { Watchdog } from './watchdog.ts';

// One streamed chat completion call, dispatched on the provider's keep-alive pool with a handler of
// our own: undici hands it the body's bytes as they are parsed, and it reads them into deltas right
// there. (undici's `request` would wrap the body in a Readable read through an async iterator, and
// the call in an AbortSignal: per read and per call, more than the rest of the proxy's own work.)
// It yields content deltas and throws what went wrong (our UpstreamStreamFault, UpstreamHttpError,
// UpstreamConnectionError, or undici's own error when the connection breaks mid-reply); the caller
// classifies and retries. Whatever ends it, no request stays open: a reply read to its end leaves
// its connection to the pool, anything else aborts the request, which closes the connection.

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

/**
 * Deltas read but not yet taken by the consumer, past which the upstream's socket is paused until
 * it catches up (the generation takes each at once, so this is only a bound).
 */
const MAX_QUEUED_DELTAS = 1024;

/**
 * How long a response may stay open after its `[DONE]`: the reply is over at `[DONE]`, and the
 * connection goes back to the pool once the response ends, or is closed after this.
 */
const AFTER_DONE_MS = 1000;

/** The abort reason when the call is left (its consumer stopped, or it failed): no DOMException to make. */
const LEFT = new Error('upstream call left');

/** The upstream's own message from an error body (OpenAI's `{"error": {"message": ...}}`), or its text. */
function errorDetail(text: string): string {
  try {
    const message = (JSON.parse(text) as { error?: { message?: unknown } } | null)?.error?.message;
    if (typeof message === 'string') return message.slice(0, MAX_ERROR_BODY_CHARS);
  } catch {
    // Not JSON: the text itself.
  }
  return text.slice(0, MAX_ERROR_BODY_CHARS);
}

/** Most of a JSON answer (a whole completion, when an upstream does not stream) that is read. */
const MAX_JSON_ANSWER_CHARS = 8 * 1024 * 1024;

/**
 * A whole `chat.completion` as the one chunk of a stream (its message as the delta); anything else
 * (an `{"error": ...}` body, or not JSON) as it is, for the stream reader to classify.
 */
function asStreamChunk(json: string): string {
  let completion: { choices?: unknown; usage?: unknown } | null;
  try {
    completion = JSON.parse(json) as typeof completion;
  } catch {
    return json;
  }
  // Not a completion (an `{"error": ...}` body, say): on one line, as a stream's chunk is.
  if (!completion || !Array.isArray(completion.choices)) return JSON.stringify(completion);
  const choices = (completion.choices as Array<{ index?: unknown; message?: { content?: unknown }; finish_reason?: unknown } | null>).map((choice) => ({
    index: choice?.index ?? 0,
    delta: { content: choice?.message?.content ?? null },
    finish_reason: choice?.finish_reason ?? null,
  }));
  return JSON.stringify({ choices, ...(completion.usage ? { usage: completion.usage } : {}) });
}

type Outcome = { readonly ok: true } | { readonly ok: false; readonly error: unknown };

/** An error status, whose body is read (up to a bound) for the logs. */
interface ErrorStatus {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  text: string;
}

/**
 * The call's dispatch handler, and the queue between it and the generator that reads it: the
 * handler runs inside undici's parser, the generator on its consumer's pulls.
 */
class Call implements Dispatcher.DispatchHandler {
  readonly #reader: CompletionChunkReader;
  readonly #onToken: () => void;
  readonly #decoder = new StringDecoder('utf8');
  #controller: Dispatcher.DispatchController | undefined;
  /** Why the request is to be aborted, set before undici handed us its controller. */
  #abortOnStart: Error | undefined;
  /** Deltas read and not yet taken. */
  #deltas: string[] = [];
  #errorStatus: ErrorStatus | undefined;
  /**
   * The body of a 200 labelled JSON: one completion (an upstream that ignores `stream: true`), read
   * whole, unless its first character says it is a stream after all (then read as one).
   */
  #json: string | undefined;
  /** The body labelled JSON began with `{`: one completion, read whole. */
  #isJson = false;
  #started = false;
  /** How the call ended, once it has (after the deltas still queued). */
  #outcome: Outcome | undefined;
  #wake: (() => void) | undefined;
  #afterDone: NodeJS.Timeout | undefined;

  /** `onToken`: deltas arrived (the watchdog's first token, then its sign of life). */
  constructor(reader: CompletionChunkReader, onToken: () => void) {
    this.#reader = reader;
    this.#onToken = onToken;
  }

  get ended(): boolean {
    return this.#outcome !== undefined;
  }

  /** The deltas read and not yet taken (one, or several in order), if any are queued. */
  take(): ProviderYield | undefined {
    const queued = this.#deltas.length;
    if (queued === 0) return undefined;
    const taken = queued === 1 ? this.#deltas[0]! : this.#deltas;
    this.#deltas = [];
    if (this.#controller?.paused && !this.#outcome) this.#controller.resume();
    return taken;
  }

  /** How the call ended, once every delta was taken; undefined while it runs. */
  outcome(): Outcome | undefined {
    return this.#deltas.length === 0 ? this.#outcome : undefined;
  }

  /** Resolves when there is something new to take. */
  wait(): Promise<void> {
    return new Promise((resolve) => (this.#wake = resolve));
  }

  /** Ends the call with `error` (the first end stands) and aborts the request. */
  abort(error: unknown): void {
    this.#end({ ok: false, error });
    if (this.#controller) this.#controller.abort(LEFT);
    else this.#abortOnStart = LEFT;
  }

  /**
   * The watchdog fired: an error status keeps what of its body arrived; a reply that said why it
   * finished is whole (its usage or `[DONE]` did not come: some upstreams put a finish reason on
   * every chunk, so only a silence or a cut, never the finish reason alone, ends a reply early);
   * anything else is the fault.
   */
  timedOut(fault: UpstreamStreamFault): void {
    if (this.#reader.finished) this.#endWhole();
    else this.abort(this.#errorStatus ? this.#httpError(this.#errorStatus) : fault);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#abortOnStart) controller.abort(this.#abortOnStart);
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    // An informational answer (102 Processing, 103 Early Hints) comes before the response, as HTTP clients read it.
    if (statusCode < 200) return;
    this.#started = true;
    if (statusCode !== 200) this.#errorStatus = { status: statusCode, headers, text: '' };
    else if (/^application\/json\b/i.test(String(headers['content-type'] ?? ''))) this.#json = '';
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#outcome) return;
    const text = this.#decoder.write(chunk);
    const failed = this.#errorStatus;
    if (failed) {
      failed.text += text;
      if (failed.text.length > MAX_ERROR_BODY_CHARS) this.abort(this.#httpError(failed));
      return;
    }
    if (this.#json === undefined) return this.#feed(controller, text);
    this.#json += text;
    if (!this.#isJson) {
      const first = this.#json.trimStart()[0];
      if (first === undefined) return;
      if (first !== '{') {
        // A stream labelled JSON: read as the stream it is.
        const stream = this.#json;
        this.#json = undefined;
        return this.#feed(controller, stream);
      }
      this.#isJson = true;
    }
    if (this.#json.length > MAX_JSON_ANSWER_CHARS) this.abort(new UpstreamStreamFault('malformed', 'a JSON answer past its bound'));
  }

  /** Reads stream text into deltas, and ends the call at `[DONE]` or at what cannot be read. */
  #feed(controller: Dispatcher.DispatchController, text: string): void {
    const deltas = this.#reader.feed(text);
    if (deltas.length > 0) {
      if (this.#deltas.length === 0) this.#deltas = deltas;
      else for (const delta of deltas) this.#deltas.push(delta);
      this.#onToken();
      if (this.#deltas.length > MAX_QUEUED_DELTAS) controller.pause();
      this.#notify();
    }
    // What the reader could not read ends the call, after the deltas before it.
    try {
      this.#reader.check();
    } catch (fault) {
      this.abort(fault);
      return;
    }
    if (this.#reader.done) {
      clearTimeout(this.#afterDone);
      this.#endOfStream();
      // An upstream that keeps the response open after it does not keep the connection too.
      this.#afterDone = setTimeout(() => controller.abort(LEFT), AFTER_DONE_MS).unref();
    }
  }

  onResponseEnd(controller: Dispatcher.DispatchController): void {
    clearTimeout(this.#afterDone);
    if (this.#outcome) return;
    const failed = this.#errorStatus;
    if (failed) {
      failed.text += this.#decoder.end();
      this.#end({ ok: false, error: this.#httpError(failed) });
      return;
    }
    if (this.#json !== undefined) {
      // Read as the one chunk of a stream that says it all: its text, why it finished, its usage.
      this.#feed(controller, `data: ${asStreamChunk(this.#json + this.#decoder.end())}\n\ndata: [DONE]\n\n`);
      clearTimeout(this.#afterDone);
    }
    if (!this.#outcome) this.#endOfStream();
  }

  onResponseError(controller: Dispatcher.DispatchController, error: Error): void {
    clearTimeout(this.#afterDone);
    if (this.#outcome) return;
    // Broken after the reply said why it finished (before its usage or `[DONE]`): the reply is whole.
    if (!this.#errorStatus && this.#reader.finished) return this.#end({ ok: true });
    // Cut short while reading an error body: what arrived is the detail.
    if (this.#errorStatus) this.#end({ ok: false, error: this.#httpError(this.#errorStatus) });
    // No answer at all, or the body broke mid-reply (undici's own error, classified as such).
    else this.#end({ ok: false, error: this.#started ? error : new UpstreamConnectionError(error) });
  }

  /** The stream is over (its `[DONE]`, or its response's end): whole if a choice said why it finished. */
  #endOfStream(): void {
    if (!this.#reader.finished) this.#end({ ok: false, error: new UpstreamStreamFault('ended_early', 'stream ended without a finish_reason') });
    else this.#end({ ok: true });
  }

  /** The reply is whole (it said why it finished), the rest of its response is not waited for: the connection goes. */
  #endWhole(): void {
    this.#end({ ok: true });
    if (this.#controller) this.#controller.abort(LEFT);
  }

  #httpError(failed: ErrorStatus): UpstreamHttpError {
    return new UpstreamHttpError(failed.status, failed.headers, errorDetail(failed.text));
  }

  #end(outcome: Outcome): void {
    if (this.#outcome) return;
    this.#outcome = outcome;
    this.#notify();
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}

export async function* streamCompletion(endpoint: UpstreamEndpoint, body: string, request: ProviderRequest, limits: CallLimits): AsyncGenerator<ProviderYield> {
  const { signal } = request;
  signal.throwIfAborted();
  // The reader and the call reach the watchdog only from later callbacks (chunks, tokens).
  const reader = new CompletionChunkReader(
    () => watchdog.chunkArrived(),
    request.reportUsage && ((usage) => request.reportUsage?.(usage)),
    // A reasoning model is replying while it thinks: from its first thought, only stalls count.
    () => watchdog.tokenArrived(),
  );
  const current = new Call(reader, () => watchdog.tokenArrived());
  const watchdog = new Watchdog(limits.firstTokenTimeoutMs, limits.stallTimeoutMs, (fault) => current.timedOut(new UpstreamStreamFault(fault)));
  // Our own stop: the generator throws the signal's reason, as the caller expects of an abort.
  const onAbort = (): void => current.abort(signal.reason);
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    endpoint.dispatcher.dispatch({ path: endpoint.path, method: 'POST', headers: endpoint.headers, body }, current);
    for (;;) {
      const deltas = current.take();
      if (deltas !== undefined) {
        yield deltas;
        continue;
      }
      const outcome = current.outcome();
      if (outcome) {
        if (!outcome.ok) throw outcome.error;
        const reason = reader.finishReason;
        if (reason === 'length' || reason === 'content_filter') request.reportFinish?.(reason);
        else if (reason === 'tool_calls' || reason === 'function_call') throw new UpstreamStreamFault('tool_call', `finish_reason ${reason}`);
        return;
      }
      await current.wait();
    }
  } finally {
    watchdog.dispose();
    signal.removeEventListener('abort', onAbort);
    // Left before its end (the consumer stopped): the request goes, and its connection with it.
    if (!current.ended) current.abort(LEFT);
  }
}
