import type { ErrorCode } from '../../shared/errors.ts';

/** The message clients see for each code when none more specific is given; never internal detail. */
export const ERROR_MESSAGES: Readonly<Record<ErrorCode, string>> = {
  invalid_json: 'The request body is not valid JSON',
  invalid_request: 'The request is invalid',
  payload_too_large: 'The request body is too large',
  unsupported_media_type: 'Content-Type must be application/json',
  unauthorized: 'A valid API key or token is required',
  forbidden: 'This origin may not use this server',
  not_found: 'Not found',
  session_busy: 'A reply is already being generated for this session',
  rate_limited: 'Too many requests',
  unavailable: 'The service is temporarily unavailable',
  upstream_error: 'Upstream model failed',
  upstream_auth: 'The upstream model rejected our credentials',
  upstream_rate_limited: 'The upstream model is rate limited',
  upstream_timeout: 'The upstream model timed out',
  cancelled: 'The reply was cancelled',
  interrupted: 'The reply was interrupted',
  internal: 'Internal error',
};

/**
 * The one error type of Sluice. `message` is always safe to show a client; `cause` keeps the
 * original error for logs only.
 */
export class SluiceError extends Error {
  override readonly name = 'SluiceError';
  readonly code: ErrorCode;
  /** Seconds a client should wait before retrying, when the cause says so. */
  readonly retryAfterSeconds: number | undefined;
  /**
   * Why, more precisely than the code, for the metrics and logs only (clients see the code): one
   * code covers refusals an operator tells apart (`rate_limited`: a rate, or a key's sessions).
   */
  readonly reason: string | undefined;

  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown; retryAfterSeconds?: number; reason?: string }) {
    super(message ?? ERROR_MESSAGES[code], { cause: options?.cause });
    this.code = code;
    this.retryAfterSeconds = options?.retryAfterSeconds;
    this.reason = options?.reason;
  }

  static from(error: unknown): SluiceError {
    return toSluiceError(error);
  }
}

/** Turns anything caught into a SluiceError; unknown errors become `internal` with a generic message. */
export function toSluiceError(error: unknown): SluiceError {
  if (error instanceof SluiceError) return error;
  return new SluiceError('internal', undefined, { cause: error });
}

/** Abort is a normal end of a stream, not a failure. */
export function isAbortError(error: unknown, signal?: AbortSignal): boolean {
  if (signal?.aborted) return true;
  return error instanceof Error && (error.name === 'AbortError' || (error as { code?: unknown }).code === 'ABORT_ERR');
}
