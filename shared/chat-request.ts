import { z } from 'zod';
import { SessionId } from './session.ts';

/** Input of the `chat.stream` subscription. `lastEventId` is filled in by tRPC's links on resume. */
export const ChatStreamInput = z.object({
  message: z.string().min(1, 'must be a non-empty string'),
  sessionId: SessionId.optional(),
  lastEventId: z.string().nullish(),
});
export type ChatStreamInput = z.infer<typeof ChatStreamInput>;

export const SessionRef = z.object({ sessionId: SessionId });
export type SessionRef = z.infer<typeof SessionRef>;

/**
 * Input of `chat.cancel`. With `replyId` (the id of a reply's `start` event) only that reply is
 * stopped: a client that leaves its own reply never stops another's in the same session.
 */
export const CancelInput = SessionRef.extend({ replyId: z.string().min(1).max(200).optional() });
export type CancelInput = z.infer<typeof CancelInput>;

/** The most messages one page of history holds. */
export const MAX_HISTORY_PAGE = 1000;

/**
 * A page of a session's history: the newest `limit` messages, or those before position `before`
 * (a message's `seq`: pass the oldest one you hold to get the page before it). Without either, all.
 */
const PageLimit = z.number().int().min(1).max(MAX_HISTORY_PAGE, `must be at most ${MAX_HISTORY_PAGE}`);
const PageBefore = z.number().int().min(1).max(2_147_483_647);
export const HistoryPageInput = z.object({ limit: PageLimit.optional(), before: PageBefore.optional() });

/** Input of `chat.history`. */
export const HistoryInput = SessionRef.extend(HistoryPageInput.shape);
export type HistoryInput = z.infer<typeof HistoryInput>;

/** The query of `GET /v1/sessions/{session_id}/messages` (`?limit=50&before=120`). */
export const HistoryQuery = z.object({ limit: z.coerce.number().pipe(PageLimit).optional(), before: z.coerce.number().pipe(PageBefore).optional() });

export const DeleteResult = z.object({ deleted: z.boolean() });
export type DeleteResult = z.infer<typeof DeleteResult>;

export const CancelResult = z.object({ cancelled: z.boolean() });
export type CancelResult = z.infer<typeof CancelResult>;

export const HealthStatus = z.object({ status: z.literal('ok') });
export type HealthStatus = z.infer<typeof HealthStatus>;
