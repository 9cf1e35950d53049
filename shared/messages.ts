import { z } from 'zod';
import { SessionId } from './session.ts';

export const MessageRole = z.enum(['user', 'assistant']);
export type MessageRole = z.infer<typeof MessageRole>;

/** `interrupted`: the reply stopped early (client left, cancel, shutdown); `failed`: the provider failed. */
export const MessageStatus = z.enum(['complete', 'interrupted', 'failed']);
export type MessageStatus = z.infer<typeof MessageStatus>;

export const TokenUsage = z.object({
  promptTokens: z.number().int().nonnegative(),
  completionTokens: z.number().int().nonnegative(),
  /** True when Sluice counted the tokens itself (the provider reported none); absent when the provider's. */
  estimated: z.literal(true).optional(),
});
export type TokenUsage = z.infer<typeof TokenUsage>;

export const ChatMessage = z.object({
  role: MessageRole,
  content: z.string(),
  status: MessageStatus,
  /** ISO 8601, so the shape is the same over JSON and superjson. */
  createdAt: z.iso.datetime(),
  usage: TokenUsage.optional(),
  /**
   * The message's position in its session, from 1, increasing, never reused while the session
   * lasts: pass the oldest one you hold as `before` to page back. Absent on messages that were
   * never stored (stateless replies).
   */
  seq: z.number().int().positive().optional(),
});
export type ChatMessage = z.infer<typeof ChatMessage>;

export const SessionHistory = z.object({
  sessionId: SessionId,
  messages: z.array(ChatMessage),
});
export type SessionHistory = z.infer<typeof SessionHistory>;
