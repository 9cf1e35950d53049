import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { Pool } from 'undici';
import { basicAuthorization } from './url-credentials.ts';
import type { Provider, ProviderMessage, ProviderRequest, ProviderYield } from './provider.ts';
import { streamCompletion, type UpstreamEndpoint } from './upstream-call.ts';
import { classifyUpstreamError, type UpstreamFailure } from './upstream-errors.ts';

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
  /**
   * Connections kept to the upstream, at most (default 4096). A streamed reply holds one for its
   * whole length, so this bounds the replies streaming at once; the next ones wait for a connection
   * (their first-token timeout counting) and are sent as replies end.
   */
  readonly maxConnections?: number | undefined;
  /** How long an idle connection is kept for the next reply (default 4000; an upstream's `Keep-Alive: timeout` hint overrides it). */
  readonly keepAliveMs?: number | undefined;
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
  if (o.maxConnections !== undefined && !(Number.isInteger(o.maxConnections) && o.maxConnections >= 1 && o.maxConnections <= 65_535)) {
    fail('maxConnections', 'must be an integer from 1 to 65535', o.maxConnections);
  }
  if (o.keepAliveMs !== undefined && !(Number.isInteger(o.keepAliveMs) && o.keepAliveMs >= 1 && o.keepAliveMs <= 600_000)) {
    fail('keepAliveMs', 'must be an integer from 1 to 600000', o.keepAliveMs);
  }
}

export const DEFAULT_MAX_CONNECTIONS = 4096;
export const DEFAULT_KEEP_ALIVE_MS = 4000;

/** Doubling backoff with jitter (half fixed, half random), so that retrying clients spread out. */
export function backoffMs(attempt: number, baseMs: number): number {
  const ceiling = baseMs * 2 ** attempt;
  return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
}

/**
 * The key as a bearer token, or the base URL's user and password as Basic auth (a proxy in front of
 * the upstream); neither (local servers): no Authorization header at all.
 */
function authorizationOf(base: URL, apiKey: string | undefined): { authorization?: string } {
  if (apiKey !== undefined) return { authorization: `Bearer ${apiKey}` };
  const basic = basicAuthorization(base);
  return basic === undefined ? {} : { authorization: basic };
}

/** The chat completions path under the base URL (`http://host/v1` → `/v1/chat/completions`). */
function completionsPath(base: URL): string {
  return `${base.pathname.replace(/\/+$/, '')}/chat/completions${base.search}`;
}

/**
 * A provider for any OpenAI-compatible chat completions API (OpenAI, vLLM, llama.cpp, Ollama's /v1,
 * LiteLLM, another Sluice), over undici's keep-alive connection pool. It owns retries and timeouts:
 * retries only before the first token, and nothing waits on a request once its reply is not wanted.
 */
export function createOpenAIProvider(options: OpenAIProviderOptions): Provider {
  checkOptions(options);
  const o = options;
  const base = new URL(o.baseURL);
  const endpoint: UpstreamEndpoint = {
    dispatcher: new Pool(base.origin, {
      connections: o.maxConnections ?? DEFAULT_MAX_CONNECTIONS,
      // A streamed reply holds its connection to the end: pipelining would queue replies behind it.
      pipelining: 1,
      keepAliveTimeout: o.keepAliveMs ?? DEFAULT_KEEP_ALIVE_MS,
      // The watchdog owns the time limits (firstTokenTimeoutMs, stallTimeoutMs; 0 means none).
      headersTimeout: 0,
      bodyTimeout: 0,
    }),
    path: completionsPath(base),
    headers: {
      'content-type': 'application/json',
      accept: 'text/event-stream',
      // undici's dispatcher decodes no content coding: the stream must come as it is.
      'accept-encoding': 'identity',
      'user-agent': 'sluice',
      ...authorizationOf(base, o.apiKey),
    },
  };
  const system: ProviderMessage[] = o.systemPrompt ? [{ role: 'system', content: o.systemPrompt }] : [];
  const bodyFor = (messages: readonly ProviderMessage[], callerMax: number | undefined): string => {
    // The caller may ask for fewer tokens than the configuration allows, never for more.
    const maxTokens = callerMax === undefined ? o.maxTokens : Math.min(callerMax, o.maxTokens ?? callerMax);
    return JSON.stringify({
      model: o.model,
      messages: [...system, ...messages].map((m) => ({ role: m.role, content: m.content })),
      stream: true,
      ...(o.includeUsage ? { stream_options: { include_usage: true } } : {}),
      ...(o.temperature !== undefined ? { temperature: o.temperature } : {}),
      ...(maxTokens !== undefined ? { max_tokens: maxTokens } : {}),
    });
  };
  const limits = { firstTokenTimeoutMs: o.firstTokenTimeoutMs, stallTimeoutMs: o.stallTimeoutMs };
  let closed: Promise<void> | undefined;

  return {
    name: 'openai',
    ...(system.length > 0 ? { preamble: system } : {}),
    // The pool closes its idle connections at once, and the others as their replies end.
    close: () => (closed ??= endpoint.dispatcher.close()),
    async *stream(request: ProviderRequest): AsyncGenerator<ProviderYield> {
      const body = bodyFor(request.messages, request.maxTokens);
      const { signal } = request;
      for (let n = 0; ; n++) {
        let yielded = false;
        try {
          for await (const deltas of streamCompletion(endpoint, body, request, limits)) {
            yielded = true;
            yield deltas;
          }
          return;
        } catch (error) {
          if (signal.aborted) throw error;
          const failure: UpstreamFailure = classifyUpstreamError(error);
          const hintMs = failure.error.retryAfterSeconds === undefined ? undefined : failure.error.retryAfterSeconds * 1000;
          // Our own backoff stops growing at the longest wait; a hint asking for longer is passed on instead.
          const waitMs = hintMs ?? Math.min(backoffMs(n, o.retryBaseMs), o.retryMaxDelayMs);
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
