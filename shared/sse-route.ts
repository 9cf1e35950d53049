import { z } from 'zod';
import { SessionId } from './session.ts';

/** Body of `POST /v1/chat/stream` (see docs/sse-format.md). */
export const SseChatRequest = z.object({
  message: z.string().min(1, 'must be a non-empty string'),
  session_id: SessionId.optional(),
});
export type SseChatRequest = z.infer<typeof SseChatRequest>;

/** Body of `POST /v1/chat/cancel`. */
export const SseCancelRequest = z.object({ session_id: SessionId.optional() });
export type SseCancelRequest = z.infer<typeof SseCancelRequest>;

/** The `data:` payloads of the documented route, as a client parses them. */
export const SseDeltaData = z.object({
  delta: z.string(),
  done: z.literal(false),
  chunk_index: z.number().int().positive(),
});
export const SseDoneData = z.object({
  delta: z.literal(''),
  done: z.literal(true),
  total_chunks: z.number().int().nonnegative(),
});
export const SseMessageData = z.union([SseDeltaData, SseDoneData]);
export type SseMessageData = z.infer<typeof SseMessageData>;

export const SseErrorData = z.object({ message: z.string(), partial: z.string() });
export type SseErrorData = z.infer<typeof SseErrorData>;
