import type { IncomingMessage, ServerResponse } from 'node:http';
import { UIChatRequest } from '../../../shared/ui-chat.ts';
import type { Attachment } from '../../core/chat-service.ts';
import { SluiceError } from '../../core/errors.ts';
import { readBody, readJsonBody, sendError, sendJson } from './json-io.ts';
import type { TransportName } from '../admission.ts';
import type { RouteDeps } from './route-context.ts';
import { streamSse } from './sse-stream.ts';
import { chatIdFrom, newTurnText } from './ui-chat-request.ts';
import { encodeUIChunk, startLine, UI_DONE_LINE, UI_PING, UI_STREAM_HEADERS } from './ui-message-encoding.ts';

// The AI SDK's UI message stream protocol, so that `useChat` with `DefaultChatTransport` can use
// Sluice as its backend. One more listener on the chat service, like the other transports: same
// sessions, limits and history; a client that leaves starts the resume window, and the reply goes
// on for a reload to pick up (`resume: true`).

const TRANSPORT = 'ui-chat' satisfies TransportName;

/** `POST /v1/ui/chat`: the chat id is the session, the last message the new turn. */
export async function handleUIChat(req: IncomingMessage, res: ServerResponse, deps: RouteDeps): Promise<void> {
  let attachment: Attachment;
  try {
    const body = await readJsonBody(req, UIChatRequest, deps.maxBodyBytes);
    // useChat sends an edit as a submission naming the message it replaces, its conversation cut
    // after it: taken for a new last turn, history would keep both branches behind the page.
    if (body.trigger !== 'regenerate-message' && body.messageId != null) {
      throw new SluiceError('invalid_request', 'messageId: editing a sent message is not supported: the chat keeps what was said (send a new message)');
    }
    const message = newTurnText(body.messages);
    attachment = await deps.admission.open(deps.ownerOf(req), {
      message,
      sessionId: body.id,
      lastEventId: undefined,
      lastEventIdField: 'Last-Event-ID',
      transport: TRANSPORT,
    });
  } catch (error) {
    sendError(res, error);
    return;
  }
  await streamReply(res, deps, attachment);
}

/**
 * `GET /v1/ui/chat/{chatId}/stream`: the chat's running reply, from its start (the AI SDK's
 * `DefaultChatTransport` treats a resumed stream as a replay by default, and `start` resets the
 * message it rebuilds); `204` when no reply runs.
 */
export async function handleUIChatResume(req: IncomingMessage, res: ServerResponse, deps: RouteDeps, params: readonly string[]): Promise<void> {
  let attachment: Attachment | undefined;
  try {
    attachment = await deps.service.attachSession(deps.ownerOf(req), chatIdFrom(params));
  } catch (error) {
    sendError(res, error);
    return;
  }
  if (!attachment) {
    res.writeHead(204, { 'Cache-Control': 'no-store' });
    res.end();
    return;
  }
  deps.metrics.resumed(TRANSPORT);
  await streamReply(res, deps, attachment);
}

/**
 * `POST /v1/ui/chat/{chatId}/stop`: stops the chat's running reply (what `useChat`'s `stop()` means;
 * the client's `uiChatFetch` calls it, since closing the stream alone is what a reload does too).
 */
export async function handleUIChatStop(req: IncomingMessage, res: ServerResponse, deps: RouteDeps, params: readonly string[]): Promise<void> {
  try {
    // No body is expected; one is still bounded, as on every route.
    await readBody(req, deps.maxBodyBytes);
    const owner = deps.ownerOf(req);
    const chatId = chatIdFrom(params);
    const cancelled = await deps.service.cancel(owner, chatId);
    if (cancelled) await untilEnded(res, deps, owner, chatId);
    if (!res.destroyed) sendJson(res, 200, { cancelled });
  } catch (error) {
    sendError(res, error);
  }
}

/** A stopped reply ends within a turn or two of its provider; this bounds the wait for one that does not. */
const STOP_WAIT_MS = 5_000;

/**
 * Waits until the chat's reply has ended (its partial stored, the session free again), so that
 * a message sent right after the stop's answer does not find the session busy.
 */
async function untilEnded(res: ServerResponse, deps: RouteDeps, owner: string, chatId: string): Promise<void> {
  const attachment = await deps.service.attachSession(owner, chatId);
  if (!attachment) return;
  const { listener } = attachment;
  const give = (): void => listener.close();
  const timer = setTimeout(give, STOP_WAIT_MS);
  res.once('close', give);
  try {
    // The terminal event goes out after the reply is stored and the session released.
    while (!(await listener.next()).done);
  } finally {
    clearTimeout(timer);
    res.off('close', give);
    listener.close();
  }
}

function streamReply(res: ServerResponse, deps: RouteDeps, attachment: Attachment): Promise<void> {
  res.writeHead(200, UI_STREAM_HEADERS);
  return streamSse({
    res,
    listener: attachment.listener,
    sink: deps.sinkFor(res),
    opening: startLine(attachment.generationId),
    frame: encodeUIChunk,
    trailer: UI_DONE_LINE,
    ping: { everyMs: deps.ssePingMs, frame: UI_PING },
    metrics: deps.metrics,
    transport: TRANSPORT,
  });
}
