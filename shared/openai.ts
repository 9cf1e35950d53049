import { z } from 'zod';
import { ErrorCode } from './errors.ts';

// The OpenAI-compatible routes (`POST /v1/chat/completions`, `GET /v1/models`): the subset of
// OpenAI's chat completions API that Sluice serves. Unknown request fields are ignored, as they are
// by most compatible servers; fields Sluice cannot honour are refused with a message naming them.

/** Header naming a Sluice session: the conversation is then the session's stored history. */
export const SLUICE_SESSION_HEADER = 'x-sluice-session';

const TextPart = z.object({ type: z.literal('text', 'only text content parts are supported'), text: z.string() });

/** A message's content: a string, or an array of text parts (joined). */
export const OpenAIMessageContent = z.union([z.string(), z.array(TextPart).min(1)], {
  error: 'must be a string or an array of text parts',
});

export const OpenAIChatMessage = z.object({
  // `developer` is OpenAI's newer name for `system`; tool messages need tools, which Sluice has not.
  role: z.enum(['system', 'developer', 'user', 'assistant'], "must be 'system', 'developer', 'user' or 'assistant'"),
  content: OpenAIMessageContent,
  name: z.string().optional(),
});
export type OpenAIChatMessage = z.infer<typeof OpenAIChatMessage>;

const unsupported = (what: string) =>
  z
    .unknown()
    .refine((v) => v === null || (Array.isArray(v) && v.length === 0), `${what} are not supported`)
    .optional();

/** Body of `POST /v1/chat/completions`. Sampling parameters are accepted and ignored: Sluice's configuration sets them. */
export const ChatCompletionRequest = z.object({
  // Echoed in every chunk of the reply: unbounded, a client would choose the bytes written per token.
  model: z.string().min(1, 'must be a non-empty string').max(256, 'must be at most 256 characters'),
  messages: z.array(OpenAIChatMessage).min(1, 'must hold at least one message'),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).nullish(),
  n: z.literal(1, 'only n=1 is supported').nullish(),
  // The most tokens the caller wants (max_tokens is OpenAI's older name): honoured below the
  // server's own limit, never above it.
  max_tokens: z.number().int().positive('must be a positive integer').nullish(),
  max_completion_tokens: z.number().int().positive('must be a positive integer').nullish(),
  tools: unsupported('tools'),
  functions: unsupported('functions'),
});
export type ChatCompletionRequest = z.infer<typeof ChatCompletionRequest>;

export const CompletionUsage = z.object({
  prompt_tokens: z.number().int().nonnegative(),
  completion_tokens: z.number().int().nonnegative(),
  total_tokens: z.number().int().nonnegative(),
});
export type CompletionUsage = z.infer<typeof CompletionUsage>;

/** One `data:` line of a streamed reply (`stream: true`), before the final `data: [DONE]`. */
export const ChatCompletionChunk = z.object({
  id: z.string(),
  object: z.literal('chat.completion.chunk'),
  created: z.number().int(),
  model: z.string(),
  choices: z.array(
    z.object({
      index: z.number().int(),
      delta: z.object({ role: z.literal('assistant').optional(), content: z.string().optional() }),
      finish_reason: z.enum(['stop', 'length', 'content_filter']).nullable(),
      logprobs: z.null().optional(),
    }),
  ),
  usage: CompletionUsage.nullish(),
});
export type ChatCompletionChunk = z.infer<typeof ChatCompletionChunk>;

/** The answer to `stream: false`. */
export const ChatCompletion = z.object({
  id: z.string(),
  object: z.literal('chat.completion'),
  created: z.number().int(),
  model: z.string(),
  choices: z.array(
    z.object({
      index: z.number().int(),
      message: z.object({ role: z.literal('assistant'), content: z.string(), refusal: z.null().optional() }),
      finish_reason: z.enum(['stop', 'length', 'content_filter']),
      logprobs: z.null().optional(),
    }),
  ),
  usage: CompletionUsage.optional(),
});
export type ChatCompletion = z.infer<typeof ChatCompletion>;

export const OpenAIModel = z.object({
  id: z.string(),
  object: z.literal('model'),
  created: z.number().int(),
  owned_by: z.string(),
});
export const OpenAIModelList = z.object({ object: z.literal('list'), data: z.array(OpenAIModel) });
export type OpenAIModelList = z.infer<typeof OpenAIModelList>;

/**
 * OpenAI's error body, on these routes only (Sluice's own routes keep `{"error": {"code", "message"}}`).
 * `code` is Sluice's error code; the same object is the payload of an error chunk inside a stream.
 */
export const OpenAIErrorBody = z.object({
  error: z.object({
    message: z.string(),
    type: z.string(),
    param: z.string().nullable(),
    code: ErrorCode,
  }),
});
export type OpenAIErrorBody = z.infer<typeof OpenAIErrorBody>;
