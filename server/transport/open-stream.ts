import type { Attachment, ChatService } from '../core/chat-service.ts';
import { DEFAULT_SESSION_ID } from '../../shared/session.ts';

export interface OpenStreamRequest {
  readonly owner: string;
  readonly message: string;
  readonly sessionId: string | undefined;
  /** The last event the client saw: when given, the stream resumes that reply instead of starting one. */
  readonly lastEventId: string | null | undefined;
  readonly transport: string;
}

/** Starts a reply, or resumes one from an event id; every streaming transport opens its streams here. */
export function openStream(service: ChatService, request: OpenStreamRequest, signal: AbortSignal | undefined): Promise<Attachment> {
  if (request.lastEventId) return service.attach(request.owner, request.lastEventId, signal, request.transport);
  return service.start(
    { owner: request.owner, sessionId: request.sessionId ?? DEFAULT_SESSION_ID, message: request.message, transport: request.transport },
    signal,
  );
}
