import { setTimeout as sleep } from 'node:timers/promises';
import OpenAI from 'openai';
import type { ChatCompletionCreateParamsStreaming, ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import type { Logger } from 'pino';
import type { TokenUsage } from '../../../shared/messages.ts';
import type { Provider, ProviderMessage, ProviderRequest } from './provider.ts';
import { classifyUpstreamError, UpstreamStreamFault, type UpstreamFailure } from './upstream-errors.ts';
import { Watchdog } from './watchdog.ts';

export interface OpenAIProviderOptions {
  /** The API's base URL, ending where `/chat/completions` is appended (such as `http://host/v1`). */
  readonly baseURL: string;
  /** Sent as `Authorization: Bearer`; without one no Authorization header is sent (local servers). */
  readonly apiKey?: string | undefined;
  readonly model: string;
  readonly temperature?: number | undefined;
  readonly maxTokens?: number | undefined;
  /** Put before every conversation as a system message. */
  readonly systemPrompt?: string | undefined;
  /** Ask for a final usage chunk (`stream_options.include_usage`). */
  readonly includeUsage: boolean;
  /** Limit from the request until the first token (0: none). */
  readonly firstTokenTimeoutMs: number;
  /** Limit between chunks once tokens flow (0: none). */
  readonly stallTimeoutMs: number;
  /** Further attempts after a retryable failure, only while no token has been yielded. */
  readonly retries: number;
  readonly retryBaseMs: number;
  /** A wait longer than this (an upstream's retry-after included) is not made: the failure stands. */
  readonly retryMaxDelayMs: number;
  /** Upstream failures are logged here with their details, which clients never see. */
  readonly logger?: Pick<Logger, 'warn'> | undefined;
}

function fail(name: string, rule: string, value: unknown): never {
  throw new RangeError(`openai provider: ${name} ${rule}, got ${JSON.stringify(value)}`);
}

function checkOptions(o: OpenAIProviderOptions): void {
  let url: URL | undefined;
  try {
    url = new URL(o.baseURL);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) fail('baseURL', 'must be an http:// or https:// URL', o.baseURL);
  if (typeof o.model !== 'string' || o.model.trim() === '') fail('model', 'must be a non-empty string', o.model);
  if (o.apiKey !== undefined && (typeof o.apiKey !== 'string' || o.apiKey === '')) fail('apiKey', 'must be a non-empty string when given', '<hidden>');
  if (o.temperature !== undefined && !(Number.isFinite(o.temperature) && o.temperature >= 0 && o.temperature <= 2)) {
    fail('temperature', 'must be a number from 0 to 2', o.temperature);
  }
  if (o.maxTokens !== undefined && !(Number.isInteger(o.maxTokens) && o.maxTokens > 0)) fail('maxTokens', 'must be a positive integer', o.maxTokens);
  if (o.systemPrompt !== undefined && (typeof o.systemPrompt !== 'string' || o.systemPrompt === '')) {
    fail('systemPrompt', 'must be a non-empty string when given', o.systemPrompt);
  }
  for (const name of ['firstTokenTimeoutMs', 'stallTimeoutMs', 'retryMaxDelayMs'] as const) {
    if (!Number.isInteger(o[name]) || o[name] < 0) fail(name, 'must be a non-negative integer (0: none)', o[name]);
  }
  if (!Number.isInteger(o.retries) || o.retries < 0 || o.retries > 10) fail('retries', 'must be an integer from 0 to 10', o.retries);
  if (!Number.isInteger(o.retryBaseMs) || o.retryBaseMs < 1) fail('retryBaseMs', 'must be a positive integer', o.retryBaseMs);
}

/** Doubling backoff with jitter (half fixed, half random), so that retrying clients spread out. */
export function backoffMs(attempt: number, baseMs: number): number {
  const ceiling = baseMs * 2 ** attempt;
  return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
}

interface ChunkChoice {
  readonly index?: unknown;
  readonly delta?: { readonly content?: unknown } | null;
  readonly finish_reason?: unknown;
}
interface Chunk {
  readonly choices: readonly ChunkChoice[];
  readonly usage?: { readonly prompt_tokens?: unknown; readonly completion_tokens?: unknown } | null;
}

// The SDK parses JSON but checks no shape; a chunk we cannot read is the upstream's fault.
function asChunk(value: unknown): Chunk {
  if (typeof value !== 'object' || value === null || !Array.isArray((value as { choices?: unknown }).choices)) {
    throw new UpstreamStreamFault('malformed', `chunk without a choices array: ${JSON.stringify(value)?.slice(0, 200)}`);
  }
  return value as Chunk;
}

function usageOf(chunk: Chunk): TokenUsage | undefined {
  const u = chunk.usage;
  if (!u) return undefined;
  const { prompt_tokens: p, completion_tokens: c } = u;
  if (!Number.isInteger(p) || !Number.isInteger(c) || (p as number) < 0 || (c as number) < 0) return undefined;
  return { promptTokens: p as number, completionTokens: c as number };
}

/**
 * A provider for any OpenAI-compatible chat completions API (OpenAI, vLLM, llama.cpp, Ollama's /v1,
 * LiteLLM, another Sluice), through the official SDK. It owns retries and timeouts (the SDK's own
 * retries are off: they would retry after tokens were sent, and could not be aborted while waiting).
 */
export function createOpenAIProvider(options: OpenAIProviderOptions): Provider {
  checkOptions(options);
  const o = options;
  const client = new OpenAI({
    baseURL: o.baseURL,
    // The SDK insists on a key; without one we send none at all (the null header below).
    apiKey: o.apiKey ?? 'unused',
    ...(o.apiKey === undefined ? { defaultHeaders: { Authorization: null } } : {}),
    // Explicit nulls, so that OPENAI_ORG_ID / OPENAI_PROJECT_ID in the environment are not sent.
    organization: null,
    project: null,
    maxRetries: 0,
    // The SDK would print malformed chunks (upstream text) to the console; we log them ourselves.
    logLevel: 'off',
  });
  const system: ChatCompletionMessageParam[] = o.systemPrompt ? [{ role: 'system', content: o.systemPrompt }] : [];
  const paramsFor = (messages: readonly ProviderMessage[]): ChatCompletionCreateParamsStreaming => ({
    model: o.model,
    messages: [...system, ...messages.map((m) => ({ role: m.role, content: m.content }))],
    stream: true,
    ...(o.includeUsage ? { stream_options: { include_usage: true } } : {}),
    ...(o.temperature !== undefined ? { temperature: o.temperature } : {}),
    ...(o.maxTokens !== undefined ? { max_tokens: o.maxTokens } : {}),
  });

  /** One HTTP call: yields content deltas; throws what went wrong; aborts its request when left. */
  async function* attempt(params: ChatCompletionCreateParamsStreaming, request: ProviderRequest): AsyncGenerator<string> {
    const { signal } = request;
    const controller = new AbortController();
    const onAbort = (): void => controller.abort(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    const watchdog = new Watchdog(o.firstTokenTimeoutMs, o.stallTimeoutMs, (fault) => controller.abort(new UpstreamStreamFault(fault)));
    try {
      signal.throwIfAborted();
      let finished = false;
      let stream;
      try {
        stream = await client.chat.completions.create(params, { signal: controller.signal });
      } catch (error) {
        // An abort by our watchdog surfaces as the SDK's abort error; name the real reason.
        if (watchdog.fired) throw new UpstreamStreamFault(watchdog.fired);
        throw error;
      }
      for await (const raw of stream as AsyncIterable<unknown>) {
        const chunk = asChunk(raw);
        watchdog.chunkArrived();
        const usage = usageOf(chunk);
        if (usage) request.reportUsage?.(usage);
        for (const choice of chunk.choices) {
          if (typeof choice !== 'object' || choice === null) throw new UpstreamStreamFault('malformed', 'choice is not an object');
          // n is always 1; a choice with another index is not ours to show.
          if (choice.index !== undefined && choice.index !== 0) continue;
          const content = choice.delta?.content;
          if (typeof content === 'string') {
            if (content.length > 0) {
              watchdog.tokenArrived();
              yield content;
            }
          } else if (content !== undefined && content !== null) {
            throw new UpstreamStreamFault('malformed', 'delta.content is not a string');
          }
          if (typeof choice.finish_reason === 'string') finished = true;
        }
      }
      // The SDK ends its iteration quietly when its request is aborted: say why it ended.
      if (watchdog.fired) throw new UpstreamStreamFault(watchdog.fired);
      signal.throwIfAborted();
      if (!finished) throw new UpstreamStreamFault('ended_early', 'stream ended without a finish_reason');
    } finally {
      watchdog.dispose();
      signal.removeEventListener('abort', onAbort);
      // Whatever ended this call (done, failure, the consumer leaving), no request stays open.
      controller.abort();
    }
  }

  return {
    name: 'openai',
    async *stream(request: ProviderRequest): AsyncGenerator<string> {
      const params = paramsFor(request.messages);
      const { signal } = request;
      for (let n = 0; ; n++) {
        let yielded = false;
        try {
          for await (const delta of attempt(params, request)) {
            yielded = true;
            yield delta;
          }
          return;
        } catch (error) {
          if (signal.aborted) throw error;
          const failure: UpstreamFailure = classifyUpstreamError(error);
          const hintMs = failure.error.retryAfterSeconds === undefined ? undefined : failure.error.retryAfterSeconds * 1000;
          const waitMs = hintMs ?? backoffMs(n, o.retryBaseMs);
          // Never after the first token: the client already has part of this reply.
          const retry = !yielded && failure.retryable && n < o.retries && waitMs <= o.retryMaxDelayMs;
          o.logger?.warn(
            { attempt: n + 1, code: failure.error.code, ...failure.log, ...(retry ? { retryInMs: Math.round(waitMs) } : {}) },
            retry ? 'upstream call failed; retrying' : 'upstream call failed',
          );
          if (!retry) throw failure.error;
          await sleep(waitMs, undefined, { signal });
        }
      }
    },
  };
}
