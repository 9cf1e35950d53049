import type { ErrorCode } from '../../../shared/errors.ts';
import { upstreamRefused } from '../../core/providers/upstream-errors.ts';
import { TOO_MANY_SESSIONS } from '../../core/store/history.ts';

/**
 * Codes answered with `x-should-retry: false`, which the official `openai` SDKs obey: a busy
 * session's request, retried by default, would run after the reply it collided with, as a turn its
 * caller was never told about. An upstream's refusal is answered so too (see upstreamRefused), and
 * a key's limit on sessions, which no wait lifts (its caller must delete one).
 */
const NOT_RETRYABLE: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['session_busy']);

/**
 * The headers that tell a client whether and when to retry: the error's own hint (a rate limit's
 * window, an upstream's Retry-After), else a second for `unavailable` (a store failing over, the
 * server draining), which is worth retrying soon; `x-should-retry: false` where a retry would do harm.
 */
export function retryHeaders(error: {
  readonly code: ErrorCode;
  readonly message: string;
  readonly retryAfterSeconds?: number | undefined;
  readonly reason?: string | undefined;
}): Record<string, string> {
  const headers: Record<string, string> = {};
  const seconds = error.retryAfterSeconds ?? (error.code === 'unavailable' ? 1 : undefined);
  if (seconds !== undefined) headers['Retry-After'] = String(Math.ceil(seconds));
  if (NOT_RETRYABLE.has(error.code) || upstreamRefused(error) || error.reason === TOO_MANY_SESSIONS) headers['x-should-retry'] = 'false';
  return headers;
}

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
