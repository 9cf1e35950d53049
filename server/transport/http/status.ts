import type { ErrorCode } from '../../../shared/errors.ts';

/**
 * Codes answered with `x-should-retry: false`, which the official `openai` SDKs obey: a busy
 * session's request, retried by default, would run after the reply it collided with, as a turn its
 * caller was never told about.
 */
export const NOT_RETRYABLE: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['session_busy']);

/** The HTTP status of each error code on Sluice's own routes. */
export const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = {
  invalid_json: 400,
  invalid_request: 422,
  payload_too_large: 413,
  unsupported_media_type: 415,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  session_busy: 409,
  rate_limited: 429,
  unavailable: 503,
  upstream_error: 502,
  upstream_auth: 502,
  upstream_rate_limited: 503,
  upstream_timeout: 504,
  cancelled: 499,
  interrupted: 503,
  internal: 500,
};
