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

export const CancelResult = z.object({ cancelled: z.boolean() });
export type CancelResult = z.infer<typeof CancelResult>;

export const HealthStatus = z.object({ status: z.literal('ok') });
export type HealthStatus = z.infer<typeof HealthStatus>;
