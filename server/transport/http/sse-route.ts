import type { IncomingMessage, ServerResponse } from 'node:http';
import { SseChatRequest } from '../../../shared/sse-route.ts';
import type { Attachment } from '../../core/chat-service.ts';
import { readJsonBody, sendError } from './json-io.ts';
import type { RouteDeps } from './route-context.ts';
import { encodeSseFrame, encodeSsePing, SSE_HEADERS, SSE_HEADERS_CLOSING } from './sse-frames.ts';
import { streamSse } from './sse-stream.ts';

/** `POST /v1/chat/stream`: the documented SSE route; with `Last-Event-ID` it resumes instead of starting. */
export async function handleChatStream(req: IncomingMessage, res: ServerResponse, deps: RouteDeps): Promise<void> {
  let attachment: Attachment;
  try {
    const body = await readJsonBody(req, SseChatRequest, deps.maxBodyBytes);
    const lastEventId = req.headers['last-event-id'];
    attachment = await deps.admission.open(deps.ownerOf(req), {
      message: body.message,
      sessionId: body.session_id,
      lastEventId: typeof lastEventId === 'string' && lastEventId ? lastEventId : undefined,
      lastEventIdField: 'Last-Event-ID',
      transport: 'sse',
    });
  } catch (error) {
    sendError(res, error);
    return;
  }

  // The reference's `Connection: keep-alive`, unless the client asked to close (HTTP/1.1 says it wins).
  // The reply's id comes with the headers, which go out while the model thinks: a client cut off
  // before the first event resumes with `Last-Event-ID: <id>:0` and gets the whole reply.
  // In writeHead's own headers, not setHeader: a response with no header set before writes its head
  // straight from the object, where one set before sends every header through setHeader's checks.
  const headers = /\bclose\b/i.test(req.headers.connection ?? '') ? SSE_HEADERS_CLOSING : SSE_HEADERS;
  res.writeHead(200, { ...headers, 'X-Sluice-Reply-Id': attachment.generationId });
  await streamSse({
    res,
    listener: attachment.listener,
    sink: deps.sinkFor(res),
    opening: '',
    frame: encodeSseFrame,
    ping: { everyMs: deps.ssePingMs, frame: encodeSsePing },
    metrics: deps.metrics,
    transport: 'sse',
  });
}
