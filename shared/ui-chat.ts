import { z } from 'zod';
import { MessageStatus } from './messages.ts';
import { SessionId } from './session.ts';

// `POST /v1/ui/chat` and `GET /v1/ui/chat/{chatId}/stream`: the AI SDK's UI message stream
// protocol (v1), as its `DefaultChatTransport` (and so `useChat`) speaks it.

/** One part of a UI message; Sluice reads only `text` parts. */
export const UIMessagePart = z.looseObject({ type: z.string(), text: z.string().optional() });

/** A UI message as the AI SDK sends it (`id`, `role`, `parts`, and whatever else it carries). */
export const UIChatMessage = z.looseObject({
  id: z.string().optional(),
  role: z.enum(['system', 'user', 'assistant']),
  parts: z.array(UIMessagePart),
});
export type UIChatMessage = z.infer<typeof UIChatMessage>;

/**
 * The body `DefaultChatTransport` posts (plus any fields of its `body` option, accepted and
 * ignored). The chat id is the session id; only the last message is read (the new user turn), so
 * the earlier ones are not validated: the session's stored history is the context.
 */
export const UIChatRequest = z.looseObject({
  id: SessionId,
  messages: z.array(z.unknown()).min(1, 'must hold at least the new user message'),
  trigger: z.enum(['submit-message', 'regenerate-message']).optional(),
  messageId: z.string().nullish(),
});
export type UIChatRequest = z.infer<typeof UIChatRequest>;

/** Token usage in the AI SDK's names; `estimated` when Sluice counted it (the provider reported none). */
export const UIChatUsage = z.object({
  inputTokens: z.number().int().nonnegative(),
  outputTokens: z.number().int().nonnegative(),
  totalTokens: z.number().int().nonnegative(),
  estimated: z.literal(true).optional(),
});
export type UIChatUsage = z.infer<typeof UIChatUsage>;

/**
 * The `messageMetadata` of the `finish` chunk that ends every reply: how it ended (as in history)
 * and what it consumed. Type `useChat<UIMessage<UIChatMetadata>>` to read it as `message.metadata`.
 */
export const UIChatMetadata = z.object({
  status: MessageStatus,
  usage: UIChatUsage.optional(),
});
export type UIChatMetadata = z.infer<typeof UIChatMetadata>;

/** The chunks Sluice sends, each as a `data:` line; the stream ends with `data: [DONE]`. */
export const UIChatChunk = z.discriminatedUnion('type', [
  z.object({ type: z.literal('start'), messageId: z.string() }),
  z.object({ type: z.literal('text-start'), id: z.string() }),
  z.object({ type: z.literal('text-delta'), id: z.string(), delta: z.string() }),
  z.object({ type: z.literal('text-end'), id: z.string() }),
  /** A reply stopped before its end (a cancel, the resume window closing, a shutdown): `reason` is the code. */
  z.object({ type: z.literal('abort'), reason: z.string() }),
  z.object({ type: z.literal('error'), errorText: z.string() }),
  z.object({ type: z.literal('finish'), finishReason: z.enum(['stop', 'length', 'content-filter', 'error', 'other']), messageMetadata: UIChatMetadata }),
]);
export type UIChatChunk = z.infer<typeof UIChatChunk>;
