import { SluiceError } from '../errors.ts';

/**
 * What went wrong with one upstream call, in our terms: the client-safe error, whether another
 * attempt could help, and details for the logs only (upstream text never reaches a client).
 */
export interface UpstreamFailure {
  readonly error: SluiceError;
  readonly retryable: boolean;
  readonly log: { readonly kind: string; readonly status?: number | undefined; readonly detail?: string | undefined };
}

// Fixed, user-safe messages: an upstream's own error text may hold keys, prompts or internals.
export const UPSTREAM_MESSAGES = {
  auth: 'The upstream model rejected our credentials',
  rateLimited: 'The upstream model is rate limited',
  server: 'Upstream model failed',
  rejected: 'The upstream model rejected the request',
  connection: 'Could not connect to the upstream model',
  firstTokenTimeout: 'The upstream model did not start replying in time',
  stall: 'The upstream model stopped sending in the middle of the reply',
  malformed: 'The upstream model sent a malformed reply',
  errorInStream: 'The upstream model reported an error',
  endedEarly: 'The upstream model ended its reply unexpectedly',
  toolCall: 'The model asked to call a tool, which this server does not offer',
} as const;

/** Our own verdicts on a stream that was answered 200, thrown inside the provider and classified here. */
export type StreamFault = 'first_token_timeout' | 'stall' | 'malformed' | 'error_chunk' | 'ended_early' | 'tool_call';

export class UpstreamStreamFault extends Error {
  override readonly name = 'UpstreamStreamFault';
  constructor(
    readonly fault: StreamFault,
    detail?: string,
  ) {
    super(detail ?? fault);
  }
}

/** Response headers as undici gives them (lower-case names), or a fetch `Headers`. */
export type ResponseHeaders = Headers | Readonly<Record<string, string | string[] | undefined>>;

function header(headers: ResponseHeaders, name: string): string | undefined {
  if (headers instanceof Headers) return headers.get(name) ?? undefined;
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** The upstream answered a status other than 200: its body's error text is for the logs only. */
export class UpstreamHttpError extends Error {
  override readonly name = 'UpstreamHttpError';
  constructor(
    readonly status: number,
    readonly headers: ResponseHeaders,
    detail: string,
  ) {
    super(`${status} ${detail}`);
  }
}

/** No answer at all: the connection could not be made, or broke before the response's headers. */
export class UpstreamConnectionError extends Error {
  override readonly name = 'UpstreamConnectionError';
  /** The system or undici error code (ECONNREFUSED, UND_ERR_SOCKET, ...). */
  readonly code: string;
  constructor(cause: unknown) {
    const c = cause as { code?: unknown; cause?: { code?: unknown }; message?: unknown } | undefined;
    const raw = c?.code ?? c?.cause?.code;
    const code = typeof raw === 'string' ? raw : 'unknown';
    super(`${code}: ${String(c?.message ?? cause)}`, { cause });
    this.code = code;
  }
}

/** The longest wait an upstream's hint is taken for: past it, a number written in digits goes on saying "later". */
export const MAX_RETRY_AFTER_SECONDS = 86_400;

/** `retry-after-ms` (OpenAI's) or `retry-after` (seconds or an HTTP date), in seconds, at most a day. */
export function retryAfterSeconds(headers: ResponseHeaders | undefined, now = Date.now()): number | undefined {
  const seconds = hintedSeconds(headers, now);
  return seconds === undefined ? undefined : Math.min(seconds, MAX_RETRY_AFTER_SECONDS);
}

function hintedSeconds(headers: ResponseHeaders | undefined, now: number): number | undefined {
  if (!headers) return undefined;
  const ms = Number.parseFloat(header(headers, 'retry-after-ms') ?? '');
  if (Number.isFinite(ms) && ms >= 0) return ms / 1000;
  const raw = header(headers, 'retry-after')?.trim();
  if (!raw) return undefined;
  if (/^\d+(\.\d+)?$/.test(raw)) return Number(raw);
  const date = Date.parse(raw);
  return Number.isNaN(date) ? undefined : Math.max(0, (date - now) / 1000);
}

const clip = (text: string): string => (text.length > 300 ? `${text.slice(0, 300)}…` : text);

function faultFailure(fault: UpstreamStreamFault): UpstreamFailure {
  const log = { kind: fault.fault, detail: clip(fault.message) };
  switch (fault.fault) {
    case 'first_token_timeout':
      return { error: new SluiceError('upstream_timeout', UPSTREAM_MESSAGES.firstTokenTimeout, { cause: fault }), retryable: true, log };
    case 'stall':
      return { error: new SluiceError('upstream_timeout', UPSTREAM_MESSAGES.stall, { cause: fault }), retryable: false, log };
    case 'malformed':
      return { error: new SluiceError('upstream_error', UPSTREAM_MESSAGES.malformed, { cause: fault }), retryable: false, log };
    // An `{"error": ...}` chunk inside a 200 stream, as OpenAI sends when it fails mid-reply.
    case 'error_chunk':
      return { error: new SluiceError('upstream_error', UPSTREAM_MESSAGES.errorInStream, { cause: fault }), retryable: false, log };
    case 'ended_early':
      return { error: new SluiceError('upstream_error', UPSTREAM_MESSAGES.endedEarly, { cause: fault }), retryable: true, log };
    // Sluice sends no tools: a reply that ends in a call (a gateway's own tools) has no answer to show.
    case 'tool_call':
      return { error: new SluiceError('upstream_error', UPSTREAM_MESSAGES.toolCall, { cause: fault }), retryable: false, log };
    default: {
      const unexpected: never = fault.fault;
      throw new TypeError(`unknown stream fault ${String(unexpected)}`);
    }
  }
}

/**
 * True for an upstream failure that the same request would meet again (the upstream refused it, or
 * its key): clients are told not to retry it (the `openai` SDKs retry a 5xx twice by default).
 */
export function upstreamRefused(error: { readonly code: string; readonly message: string }): boolean {
  return error.code === 'upstream_auth' || (error.code === 'upstream_error' && error.message === UPSTREAM_MESSAGES.rejected);
}

function statusFailure(error: UpstreamHttpError, status: number): UpstreamFailure {
  const log = { kind: 'http', status, detail: clip(error.message) };
  if (status === 401 || status === 403) {
    return { error: new SluiceError('upstream_auth', UPSTREAM_MESSAGES.auth, { cause: error }), retryable: false, log };
  }
  // A retryable answer's pause, when it asks for one (a rate limit, an overloaded upstream): waited for, or passed on.
  const hint = retryAfterSeconds(error.headers);
  const retry = hint === undefined ? { cause: error } : { cause: error, retryAfterSeconds: hint };
  if (status === 429) return { error: new SluiceError('upstream_rate_limited', UPSTREAM_MESSAGES.rateLimited, retry), retryable: true, log };
  // 408 and 409 are worth another try (as OpenAI's SDK has it), as a 5xx is; other 4xx mean our
  // request is wrong for this upstream (an unknown model, say): retrying cannot help.
  if (status >= 500 || status === 408 || status === 409)
    return { error: new SluiceError('upstream_error', UPSTREAM_MESSAGES.server, retry), retryable: true, log };
  return { error: new SluiceError('upstream_error', UPSTREAM_MESSAGES.rejected, { cause: error }), retryable: false, log };
}

/** Classifies anything an upstream call threw (the caller has already ruled out our own abort). */
export function classifyUpstreamError(error: unknown): UpstreamFailure {
  if (error instanceof UpstreamStreamFault) return faultFailure(error);
  if (error instanceof UpstreamHttpError) return statusFailure(error, error.status);
  if (error instanceof UpstreamConnectionError) {
    return {
      error: new SluiceError('upstream_error', UPSTREAM_MESSAGES.connection, { cause: error }),
      retryable: true,
      log: { kind: 'connection', detail: error.code },
    };
  }
  // The connection dropped mid-body (undici's "other side closed"), and anything else unforeseen:
  // worth another call, which the provider makes only while no token has been passed on.
  const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return {
    error: new SluiceError('upstream_error', UPSTREAM_MESSAGES.server, { cause: error }),
    retryable: true,
    log: { kind: 'other', detail: clip(detail) },
  };
}
