import { finished } from 'node:stream/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { SessionId } from '../../../shared/session.ts';
import { SseCancelRequest } from '../../../shared/sse-route.ts';
import { HistoryQuery, type DeleteResult } from '../../../shared/chat-request.ts';
import { DEFAULT_SESSION_ID } from '../../../shared/session.ts';
import { parseWith } from '../parse-input.ts';
import { readJsonBody, sendError, sendJson } from './json-io.ts';
import { historyBytes } from '../held-answers.ts';
import type { RouteDeps } from './route-context.ts';

/** The session id in a route's path, decoded and checked. */
function sessionIdOf(params: readonly string[]): string {
  let raw: string;
  try {
    raw = decodeURIComponent(params[0] ?? '');
  } catch {
    raw = '';
  }
  return parseWith(SessionId, raw, 'session_id');
}

/**
 * `GET /v1/sessions/{session_id}/messages`: the same shape as `chat.history`; `?limit=N` gives the
 * newest N, `&before=<seq>` the page before that position.
 */
export async function handleHistory(req: IncomingMessage, res: ServerResponse, deps: RouteDeps, params: readonly string[]): Promise<void> {
  try {
    const sessionId = sessionIdOf(params);
    const q = req.url?.indexOf('?') ?? -1;
    const page = parseWith(HistoryQuery, Object.fromEntries(new URLSearchParams(q === -1 ? '' : req.url!.slice(q + 1))), 'query');
    const owner = deps.ownerOf(req);
    const history = await deps.heldAnswers.answer(
      owner,
      () => deps.service.history(owner, sessionId, page),
      historyBytes,
      () => finished(res),
    );
    sendJson(res, 200, history);
  } catch (error) {
    sendError(res, error);
  }
}

/** `DELETE /v1/sessions/{session_id}`: deletes the session and its history; a running reply is cancelled first. */
export async function handleDeleteSession(req: IncomingMessage, res: ServerResponse, deps: RouteDeps, params: readonly string[]): Promise<void> {
  try {
    const deleted = await deps.service.deleteSession(deps.ownerOf(req), sessionIdOf(params));
    sendJson(res, 200, { deleted } satisfies DeleteResult);
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
