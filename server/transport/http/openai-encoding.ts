import type { ErrorCode } from '../../../shared/errors.ts';
import type { TokenUsage } from '../../../shared/messages.ts';
import type { ChatCompletion, CompletionUsage, OpenAIErrorBody } from '../../../shared/openai.ts';
import type { DoneEvent, FinishReason } from '../../../shared/stream-events.ts';
import { HTTP_STATUS } from './status.ts';

// The wire of the OpenAI-compatible route: `data: <json>\n\n` lines as OpenAI sends them.

/** What every chunk of one reply repeats. */
export interface CompletionMeta {
  readonly id: string;
  /** Unix seconds. */
  readonly created: number;
  readonly model: string;
  /** `stream_options.include_usage`: every chunk says `"usage":null`, and a last chunk has the counts. */
  readonly includeUsage: boolean;
}

export function toCompletionUsage(usage: TokenUsage): CompletionUsage {
  return {
    prompt_tokens: usage.promptTokens,
    completion_tokens: usage.completionTokens,
    total_tokens: usage.promptTokens + usage.completionTokens,
  };
}

/**
 * Encodes one reply's chunks. The parts every chunk shares are built once, so a token costs one
 * JSON.stringify of its text and one concatenation.
 */
export class ChunkEncoder {
  readonly #head: string;
  readonly #tail: string;
  readonly #meta: CompletionMeta;

  constructor(meta: CompletionMeta) {
    this.#meta = meta;
    this.#head = `data: {"id":${JSON.stringify(meta.id)},"object":"chat.completion.chunk","created":${meta.created},"model":${JSON.stringify(meta.model)},"choices":[{"index":0,"delta":`;
    this.#tail = meta.includeUsage ? ',"usage":null}\n\n' : '}\n\n';
  }

  /** The first chunk, as OpenAI sends it: the role, and empty content. */
  role(): string {
    return `${this.#head}{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]${this.#tail}`;
  }

  delta(text: string): string {
    return `${this.#head}{"content":${JSON.stringify(text)}},"logprobs":null,"finish_reason":null}]${this.#tail}`;
  }

  finish(reason: FinishReason | 'stop' = 'stop'): string {
    return `${this.#head}{},"logprobs":null,"finish_reason":"${reason}"}]${this.#tail}`;
  }

  /** The extra last chunk of `include_usage`: no choices, the counts. */
  usage(usage: TokenUsage): string {
    const m = this.#meta;
    const body = { id: m.id, object: 'chat.completion.chunk', created: m.created, model: m.model, choices: [], usage: toCompletionUsage(usage) };
    return `data: ${JSON.stringify(body)}\n\n`;
  }
}

export const DONE_LINE = 'data: [DONE]\n\n';

/** An error inside a stream that has started: OpenAI's error object as a `data:` line. */
export function errorLine(body: OpenAIErrorBody): string {
  return `data: ${JSON.stringify(body)}\n\n`;
}

export function completionBody(meta: CompletionMeta, content: string, done: Pick<DoneEvent, 'usage' | 'finishReason'>): ChatCompletion {
  const { usage } = done;
  return {
    id: meta.id,
    object: 'chat.completion',
    created: meta.created,
    model: meta.model,
    choices: [{ index: 0, message: { role: 'assistant', content, refusal: null }, logprobs: null, finish_reason: done.finishReason ?? 'stop' }],
    ...(usage ? { usage: toCompletionUsage(usage) } : {}),
  };
}

function errorType(code: ErrorCode): string {
  switch (code) {
    case 'invalid_json':
    case 'invalid_request':
    case 'payload_too_large':
    case 'unsupported_media_type':
    case 'session_busy':
      return 'invalid_request_error';
    case 'unauthorized':
      return 'authentication_error';
    case 'forbidden':
      return 'permission_error';
    case 'not_found':
      return 'not_found_error';
    case 'rate_limited':
    case 'upstream_rate_limited':
      return 'rate_limit_error';
    case 'cancelled':
    case 'interrupted':
      return 'request_interrupted';
    case 'unavailable':
    case 'upstream_error':
    case 'upstream_auth':
    case 'upstream_timeout':
    case 'internal':
      return 'server_error';
    default: {
      const unexpected: never = code;
      throw new TypeError(`unknown error code ${String(unexpected)}`);
    }
  }
}

/** The HTTP status of an error on this route: OpenAI's 400 for bad input, otherwise Sluice's own. */
export function openAIStatus(code: ErrorCode): number {
  return code === 'invalid_request' ? 400 : HTTP_STATUS[code];
}

export function openAIErrorBody(code: ErrorCode, message: string, param: string | null = null): OpenAIErrorBody {
  return { error: { message, type: errorType(code), param, code } };
}
