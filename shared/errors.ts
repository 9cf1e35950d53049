import { z } from 'zod';

/**
 * The closed set of error codes Sluice reports, on every transport. Clients may switch on them;
 * adding one is a public change.
 */
export const ERROR_CODES = [
  'invalid_json',
  'invalid_request',
  'payload_too_large',
  'unsupported_media_type',
  'unauthorized',
  'forbidden',
  'not_found',
  'session_busy',
  'rate_limited',
  'unavailable',
  'upstream_error',
  'upstream_auth',
  'upstream_rate_limited',
  'upstream_timeout',
  'cancelled',
  'interrupted',
  'internal',
] as const;

export const ErrorCode = z.enum(ERROR_CODES);
export type ErrorCode = z.infer<typeof ErrorCode>;

/** The JSON body of every non-2xx HTTP answer from Sluice's own routes. */
export const ErrorBody = z.object({
  error: z.object({ code: ErrorCode, message: z.string() }),
});
export type ErrorBody = z.infer<typeof ErrorBody>;
