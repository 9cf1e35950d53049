import type { IncomingMessage, ServerResponse } from 'node:http';
import { finished } from 'node:stream/promises';
import { z } from 'zod';
import type { OpenAIModelList } from '../../../shared/openai.ts';
import type { DoneEvent, ErrorEvent, StreamEvent } from '../../../shared/stream-events.ts';
import type { Attachment } from '../../core/chat-service.ts';
import { SluiceError, toSluiceError } from '../../core/errors.ts';
import type { TrackedEvent } from '../../core/generation.ts';
import { markRejected, readJsonBody, sendJson } from './json-io.ts';
import { retryHeaders } from './status.ts';
import type { Sink } from '../backpressure.ts';
import { drain, type Outlet } from '../drain.ts';
import { streamSse } from './sse-stream.ts';
import { ChunkEncoder, completionBody, DONE_LINE, errorLine, openAIErrorBody, openAIStatus, type CompletionMeta } from './openai-encoding.ts';
import { InvalidParamError, isRetry, newUserMessage, parseCompletionRequest, sessionFrom, toProviderMessages } from './openai-request.ts';
import type { RouteDeps } from './route-context.ts';

// OpenAI-compatible routes, so that OpenAI's SDKs and tools can use Sluice as their endpoint. They
// are one more listener on the chat service, like the other transports: same limits, same history,
// same cancellation when the client leaves.

const STREAM_HEADERS: Readonly<Record<string, string>> = {
  'Content-Type': 'text/event-stream; charset=utf-8',
  'Cache-Control': 'no-cache',
  Connection: 'keep-alive',
  'X-Accel-Buffering': 'no',
};

/**
 * Answers an error in OpenAI's shape; a started stream is cut instead (there is no status to send).
 * `stored`: the request's turn is in a session's history already, so that a retry (the `openai`
 * SDKs retry a 5xx twice by default) would be a second turn, not the same one again. `ofReply`:
 * the error ended the reply (its generation failed), rather than refused the request.
 */
export function sendOpenAIError(res: ServerResponse, error: unknown, stored = false, ofReply = false): void {
  const sluice = toSluiceError(error);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  // A reply that failed before its first token is counted (and logged) as a failed generation: it
  // is no request Sluice refused, as it is not on the SSE route.
  if (!ofReply) markRejected(res, sluice);
  const param = error instanceof InvalidParamError ? error.param : null;
  const headers = retryHeaders(sluice);
  if (stored) headers['x-should-retry'] = 'false';
  sendJson(res, openAIStatus(sluice.code), openAIErrorBody(sluice.code, sluice.message, param), headers);
}

function eventError(event: ErrorEvent): SluiceError {
  const options = event.retryAfterSeconds === undefined ? undefined : { retryAfterSeconds: event.retryAfterSeconds };
  return new SluiceError(event.code, event.message, options);
}

const ANY_JSON = z.unknown();
const PING_FRAME = (): string => ': ping\n\n';

/** `POST /v1/chat/completions`: `stream: true` answers chunks and `data: [DONE]`, otherwise one `chat.completion`. */
export async function handleChatCompletions(req: IncomingMessage, res: ServerResponse, deps: RouteDeps): Promise<void> {
  let attachment: Attachment;
  let meta: CompletionMeta;
  let stream: boolean;
  let sessionId: string | undefined;
  try {
    const body = parseCompletionRequest(await readJsonBody(req, ANY_JSON, deps.maxBodyBytes));
    const owner = deps.ownerOf(req);
    sessionId = sessionFrom(req);
    const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? undefined;
    attachment =
      sessionId === undefined
        ? await deps.service.startStateless({ owner, messages: toProviderMessages(body.messages), transport: 'openai', maxTokens })
        : await deps.service.start({
            owner,
            sessionId,
            message: newUserMessage(body.messages),
            transport: 'openai',
            resumable: false,
            retried: isRetry(req),
            maxTokens,
          });
    stream = body.stream === true;
    meta = {
      id: `chatcmpl-${attachment.generationId}`,
      created: Math.floor(Date.now() / 1000),
      model: body.model,
      includeUsage: stream && body.stream_options?.include_usage === true,
    };
  } catch (error) {
    sendOpenAIError(res, error);
    return;
  }

  const { listener } = attachment;
  const stored = sessionId !== undefined;
  // A client that leaves, even before the first token, closes its listener: that ends the wait
  // below, and stops a reply nobody else listens to.
  const onClose = (): void => listener.close();
  res.once('close', onClose);
  if (res.destroyed) listener.close();
  try {
    // Nothing is sent before the first event, so that a failure before the first token gets a real
    // HTTP status (and Retry-After), which is what OpenAI's clients act on.
    const first = await listener.next();
    if (first.done || res.destroyed) return;
    if (first.value.event.type === 'error') {
      sendOpenAIError(res, eventError(first.value.event), stored, true);
      return;
    }
    if (stream) {
      const encoder = new ChunkEncoder(meta);
      res.writeHead(200, STREAM_HEADERS);
      await streamSse({
        res,
        listener,
        first: first.value,
        sink: deps.sinkFor(res),
        opening: encoder.role(),
        frame: (event) => encodeChunk(encoder, meta, event),
        // OpenAI's clients skip SSE comments; proxies see traffic on a quiet stream.
        ping: { everyMs: deps.ssePingMs, frame: PING_FRAME },
        metrics: deps.metrics,
        transport: 'openai',
      });
      return;
    }
    const completion = new CompletionOutlet(res);
    await drain({ listener, outlet: completion, first: first.value, sink: ALWAYS_ROOM, metrics: deps.metrics, transport: 'openai' });
    const { terminal } = completion;
    if (terminal?.type === 'done') {
      // Written whole, it waits for its reader like a page of history (see HeldAnswers).
      try {
        deps.heldAnswers.hold(deps.ownerOf(req), Buffer.byteLength(completion.text, 'utf8') + COMPLETION_BYTES, () => finished(res));
      } catch (error) {
        sendOpenAIError(res, error, stored);
        return;
      }
      sendJson(res, 200, completionBody(meta, completion.text, terminal));
    } else if (terminal?.type === 'error') sendOpenAIError(res, eventError(terminal), stored, true);
    // No terminal event: the client left, there is nobody to answer.
  } finally {
    listener.close();
    res.off('close', onClose);
  }
}

/** `stream: false`: the reply is gathered, then answered whole. */
class CompletionOutlet implements Outlet {
  text = '';
  terminal: DoneEvent | ErrorEvent | undefined;
  readonly #res: ServerResponse;

  constructor(res: ServerResponse) {
    this.#res = res;
  }

  isOpen(): boolean {
    return !this.#res.destroyed;
  }

  room(): number {
    return Number.POSITIVE_INFINITY;
  }

  add({ event }: TrackedEvent): void {
    if (event.type === 'delta') this.text += event.delta;
    else if (event.type !== 'start') this.terminal = event;
  }

  flush(): void {}
}

/** What a completion's answer holds besides its text (ids, usage, its JSON). */
const COMPLETION_BYTES = 512;

/** Nothing is written until the reply is whole: there is never a reader to wait for. */
const ALWAYS_ROOM: Sink = { hasRoom: () => true, room: () => Number.POSITIVE_INFINITY, ready: () => Promise.resolve(true) };

/**
 * One event as OpenAI's chunks (`done` also ends the stream with `[DONE]`, an error does not). With
 * `include_usage` every reply ends with its usage chunk, a cancelled or failed one too (before its
 * error), so that a client billing by it counts what a cut-short reply consumed.
 */
function encodeChunk(encoder: ChunkEncoder, meta: CompletionMeta, event: StreamEvent): string {
  switch (event.type) {
    case 'delta':
      return encoder.delta(event.delta);
    case 'done':
      return encoder.finish(event.finishReason) + (meta.includeUsage && event.usage ? encoder.usage(event.usage) : '') + DONE_LINE;
    case 'error':
      // As OpenAI does mid-stream: an error object as a data line, then the end (no [DONE]).
      return (meta.includeUsage && event.usage ? encoder.usage(event.usage) : '') + errorLine(openAIErrorBody(event.code, event.message));
    case 'start':
      return '';
    default: {
      const unexpected: never = event;
      throw new TypeError(`unknown stream event ${JSON.stringify(unexpected)}`);
    }
  }
}

const STARTED = Math.floor(Date.now() / 1000);

/** `GET /v1/models`: the one model this Sluice serves. */
export async function handleModels(_req: IncomingMessage, res: ServerResponse, deps: RouteDeps): Promise<void> {
  const list: OpenAIModelList = { object: 'list', data: [{ id: deps.modelId, object: 'model', created: STARTED, owned_by: 'sluice' }] };
  sendJson(res, 200, list);
}

/** `GET /v1/models/{model}`: that model, or OpenAI's 404. */
export async function handleModel(_req: IncomingMessage, res: ServerResponse, deps: RouteDeps, params: readonly string[]): Promise<void> {
  let id: string;
  try {
    id = decodeURIComponent(params[0] ?? '');
  } catch {
    id = '';
  }
  if (id !== deps.modelId) {
    sendOpenAIError(res, new SluiceError('not_found', `The model '${id.slice(0, 200)}' does not exist`));
    return;
  }
  sendJson(res, 200, { id, object: 'model', created: STARTED, owned_by: 'sluice' });
}
