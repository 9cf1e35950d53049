import { APIConnectionError, APIConnectionTimeoutError, APIError } from 'openai';
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
} as const;

/** Our own verdicts on a stream, thrown inside the provider and classified like the SDK's errors. */
export type StreamFault = 'first_token_timeout' | 'stall' | 'malformed' | 'ended_early';

export class UpstreamStreamFault extends Error {
  override readonly name = 'UpstreamStreamFault';
  constructor(
    readonly fault: StreamFault,
    detail?: string,
  ) {
    super(detail ?? fault);
  }
}

/** `retry-after-ms` (OpenAI's) or `retry-after` (seconds or an HTTP date), in seconds. */
export function retryAfterSeconds(headers: Headers | undefined, now = Date.now()): number | undefined {
  if (!headers) return undefined;
  const ms = Number.parseFloat(headers.get('retry-after-ms') ?? '');
  if (Number.isFinite(ms) && ms >= 0) return ms / 1000;
  const raw = headers.get('retry-after')?.trim();
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
    case 'ended_early':
      return { error: new SluiceError('upstream_error', UPSTREAM_MESSAGES.endedEarly, { cause: fault }), retryable: true, log };
    default: {
      const unexpected: never = fault.fault;
      throw new TypeError(`unknown stream fault ${String(unexpected)}`);
    }
  }
}

function statusFailure(error: APIError, status: number): UpstreamFailure {
  const log = { kind: 'http', status, detail: clip(error.message) };
  if (status === 401 || status === 403) {
    return { error: new SluiceError('upstream_auth', UPSTREAM_MESSAGES.auth, { cause: error }), retryable: false, log };
  }
  if (status === 429) {
    const hint = retryAfterSeconds(error.headers);
    const options = hint === undefined ? { cause: error } : { cause: error, retryAfterSeconds: hint };
    return { error: new SluiceError('upstream_rate_limited', UPSTREAM_MESSAGES.rateLimited, options), retryable: true, log };
  }
  if (status >= 500) return { error: new SluiceError('upstream_error', UPSTREAM_MESSAGES.server, { cause: error }), retryable: true, log };
  // 408 and 409 are worth another try (the SDK's own policy); other 4xx mean our request is wrong
  // for this upstream (an unknown model, say): retrying cannot help.
  const retryable = status === 408 || status === 409;
  return { error: new SluiceError('upstream_error', UPSTREAM_MESSAGES.rejected, { cause: error }), retryable, log };
}

/** Classifies anything an upstream call threw (the caller has already ruled out our own abort). */
export function classifyUpstreamError(error: unknown): UpstreamFailure {
  if (error instanceof UpstreamStreamFault) return faultFailure(error);
  // The SDK's own timeout (headers not received within its `timeout`).
  if (error instanceof APIConnectionTimeoutError) {
    return {
      error: new SluiceError('upstream_timeout', UPSTREAM_MESSAGES.firstTokenTimeout, { cause: error }),
      retryable: true,
      log: { kind: 'timeout', detail: clip(error.message) },
    };
  }
  if (error instanceof APIConnectionError) {
    const cause = error.cause as { code?: unknown; cause?: { code?: unknown } } | undefined;
    const code = cause?.code ?? cause?.cause?.code;
    const detail = typeof code === 'string' ? code : 'unknown';
    return {
      error: new SluiceError('upstream_error', UPSTREAM_MESSAGES.connection, { cause: error }),
      retryable: true,
      log: { kind: 'connection', detail },
    };
  }
  if (error instanceof APIError) {
    if (typeof error.status === 'number') return statusFailure(error as APIError<number>, error.status);
    // No status: an `{"error": ...}` chunk inside a 200 stream.
    return {
      error: new SluiceError('upstream_error', UPSTREAM_MESSAGES.errorInStream, { cause: error }),
      retryable: false,
      log: { kind: 'error_chunk', detail: clip(error.message) },
    };
  }
  // The SDK rethrows JSON.parse's SyntaxError for a `data:` line that is not JSON.
  if (error instanceof SyntaxError) {
    return {
      error: new SluiceError('upstream_error', UPSTREAM_MESSAGES.malformed, { cause: error }),
      retryable: false,
      log: { kind: 'malformed', detail: clip(error.message) },
    };
  }
  // undici's "terminated" (the connection dropped mid-body) and anything else unforeseen.
  const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return {
    error: new SluiceError('upstream_error', UPSTREAM_MESSAGES.server, { cause: error }),
    retryable: false,
    log: { kind: 'other', detail: clip(detail) },
  };
}
