import type { ErrorCode } from '../../shared/errors.ts';

interface CodeInfo {
  /** HTTP status on Sluice's own routes. */
  readonly status: number;
  /** The message clients see when none more specific is given; never internal detail. */
  readonly message: string;
}

export const ERROR_INFO: Readonly<Record<ErrorCode, CodeInfo>> = {
  invalid_json: { status: 400, message: 'The request body is not valid JSON' },
  invalid_request: { status: 422, message: 'The request is invalid' },
  payload_too_large: { status: 413, message: 'The request body is too large' },
  unsupported_media_type: { status: 415, message: 'Content-Type must be application/json' },
  unauthorized: { status: 401, message: 'A valid API key is required' },
  not_found: { status: 404, message: 'Not found' },
  session_busy: { status: 409, message: 'A reply is already being generated for this session' },
  rate_limited: { status: 429, message: 'Too many requests' },
  unavailable: { status: 503, message: 'The service is temporarily unavailable' },
  upstream_error: { status: 502, message: 'Upstream model failed' },
  upstream_auth: { status: 502, message: 'The upstream model rejected our credentials' },
  upstream_rate_limited: { status: 503, message: 'The upstream model is rate limited' },
  upstream_timeout: { status: 504, message: 'The upstream model timed out' },
  cancelled: { status: 499, message: 'The reply was cancelled' },
  interrupted: { status: 503, message: 'The reply was interrupted' },
  internal: { status: 500, message: 'Internal error' },
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

  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown; retryAfterSeconds?: number }) {
    super(message ?? ERROR_INFO[code].message, { cause: options?.cause });
    this.code = code;
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }

  get status(): number {
    return ERROR_INFO[this.code].status;
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
