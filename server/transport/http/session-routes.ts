import type { IncomingMessage, ServerResponse } from 'node:http';
import { SessionId } from '../../../shared/session.ts';
import { SseCancelRequest } from '../../../shared/sse-route.ts';
import { DEFAULT_SESSION_ID } from '../../../shared/session.ts';
import { parseWith } from '../parse-input.ts';
import { readJsonBody, sendError, sendJson } from './json-io.ts';
import type { RouteDeps } from './route-context.ts';

/** `GET /v1/sessions/{session_id}/messages`: the same shape as `chat.history`. */
export async function handleHistory(req: IncomingMessage, res: ServerResponse, deps: RouteDeps, params: readonly string[]): Promise<void> {
  try {
    let raw: string;
    try {
      raw = decodeURIComponent(params[0] ?? '');
    } catch {
      raw = '';
    }
    const sessionId = parseWith(SessionId, raw);
    sendJson(res, 200, await deps.service.history(deps.ownerOf(req), sessionId));
  } catch (error) {
    sendError(res, error);
  }
}

/** `POST /v1/chat/cancel`: stops the session's running reply. */
export async function handleCancel(req: IncomingMessage, res: ServerResponse, deps: RouteDeps): Promise<void> {
  try {
    const body = await readJsonBody(req, SseCancelRequest, deps.maxBodyBytes);
    const cancelled = await deps.service.cancel(deps.ownerOf(req), body.session_id ?? DEFAULT_SESSION_ID);
    sendJson(res, 200, { cancelled });
  } catch (error) {
    sendError(res, error);
  }
}
