import type { IncomingMessage, ServerResponse } from 'node:http';
import { SseChatRequest } from '../../../shared/sse-route.ts';
import type { Attachment } from '../../core/chat-service.ts';
import type { TrackedEvent } from '../../core/generation.ts';
import { openStream } from '../open-stream.ts';
import { flushNow } from './flush.ts';
import { readJsonBody, sendError } from './json-io.ts';
import type { RouteDeps } from './route-context.ts';
import { encodeSseFrame, encodeSsePing, SSE_HEADERS, SSE_HEADERS_CLOSING } from './sse-frames.ts';

/** `POST /v1/chat/stream`: the documented SSE route; with `Last-Event-ID` it resumes instead of starting. */
export async function handleChatStream(req: IncomingMessage, res: ServerResponse, deps: RouteDeps): Promise<void> {
  const abort = new AbortController();
  const onClose = (): void => abort.abort();
  res.once('close', onClose);

  let attachment: Attachment;
  try {
    const body = await readJsonBody(req, SseChatRequest, deps.maxBodyBytes);
    const owner = deps.ownerOf(req);
    const lastEventId = req.headers['last-event-id'];
    attachment = await openStream(
      deps.service,
      { owner, message: body.message, sessionId: body.session_id, lastEventId: typeof lastEventId === 'string' ? lastEventId : undefined, transport: 'sse' },
      abort.signal,
    );
  } catch (error) {
    res.off('close', onClose);
    sendError(res, error);
    return;
  }

  const { listener } = attachment;
  const sink = deps.sinkFor(res);
  let sent = 0;
  deps.metrics.streamOpened('sse');
  // The reference's `Connection: keep-alive`, unless the client asked to close (HTTP/1.1 says it wins).
  res.writeHead(200, /\bclose\b/i.test(req.headers.connection ?? '') ? SSE_HEADERS_CLOSING : SSE_HEADERS);

  // Keep-alive comments for proxies; a reader that is already behind does not need them.
  const ping =
    deps.ssePingMs > 0
      ? setInterval(() => {
          if (res.writableLength === 0) res.write(encodeSsePing());
        }, deps.ssePingMs)
      : undefined;
  try {
    // Headers go out with the first frame when it is already there (one write); otherwise at once,
    // so the client sees the stream open while the model thinks.
    const already = listener.poll();
    if (!already) res.flushHeaders();
    let first = true;
    let next: IteratorResult<TrackedEvent> = already ? { done: false, value: already } : await listener.next();
    for (; !next.done; next = await listener.next()) {
      // Everything already in the log goes out in one write.
      let frames = encodeSseFrame(next.value.event, next.value.id);
      sent++;
      // A batch stops at the reader's room, so buffering stays within one frame of the high-water mark.
      const room = sink.room();
      for (let more = frames.length < room ? listener.poll() : undefined; more; more = frames.length < room ? listener.poll() : undefined) {
        frames += encodeSseFrame(more.event, more.id);
        sent++;
      }
      res.write(frames);
      if (first) {
        first = false;
        flushNow(res);
      }
      // Never queue without bound for a slow reader: wait for it, and cut it off after the send timeout.
      if (!sink.hasRoom() && !(await sink.ready(abort.signal))) break;
    }
    res.end();
  } finally {
    clearInterval(ping);
    deps.metrics.streamClosed('sse', sent);
    listener.close();
    res.off('close', onClose);
  }
}
