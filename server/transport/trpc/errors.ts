import { TRPCError } from '@trpc/server';
import type { ErrorCode } from '../../../shared/errors.ts';
import { SluiceError, toSluiceError } from '../../core/errors.ts';

type TRPCCode = TRPCError['code'];

// Codes that make httpSubscriptionLink reconnect silently are 5xx; only errors that are worth a
// retry (nothing was started) map to them.
const TRPC_CODES: Readonly<Record<ErrorCode, TRPCCode>> = {
  invalid_json: 'PARSE_ERROR',
  invalid_request: 'BAD_REQUEST',
  payload_too_large: 'PAYLOAD_TOO_LARGE',
  unsupported_media_type: 'UNSUPPORTED_MEDIA_TYPE',
  unauthorized: 'UNAUTHORIZED',
  forbidden: 'FORBIDDEN',
  not_found: 'NOT_FOUND',
  session_busy: 'CONFLICT',
  rate_limited: 'TOO_MANY_REQUESTS',
  unavailable: 'SERVICE_UNAVAILABLE',
  upstream_error: 'BAD_GATEWAY',
  upstream_auth: 'BAD_GATEWAY',
  upstream_rate_limited: 'TOO_MANY_REQUESTS',
  upstream_timeout: 'GATEWAY_TIMEOUT',
  cancelled: 'CLIENT_CLOSED_REQUEST',
  interrupted: 'SERVICE_UNAVAILABLE',
  internal: 'INTERNAL_SERVER_ERROR',
};

/** Any caught value as a TRPCError with a client-safe message; the SluiceError stays its cause. */
export function toTRPCError(error: unknown): TRPCError {
  if (error instanceof TRPCError) return error;
  const sluice = toSluiceError(error);
  return new TRPCError({ code: TRPC_CODES[sluice.code], message: sluice.message, cause: sluice });
}

/** Input that does not decode (not JSON, or superjson that superjson refuses), whatever the procedure. */
export function inputNotSuperjson(): SluiceError {
  return new SluiceError('invalid_request', 'input: must be superjson-encoded JSON');
}

/** tRPC's refusals of `connectionParams` (`parseConnectionParamsFromString` / `...FromUnknown`), on every transport. */
const CONNECTION_PARAMS_REFUSALS = new Set(['Not JSON-parsable query params', 'Invalid connection params shape']);

/**
 * The SluiceError behind a tRPC error, if any. tRPC parses an HTTP call's input JSON itself, and
 * passes the parser's SyntaxError on as the cause (its text is the engine's, not ours to show); it
 * parses `connectionParams` itself too, and says so in words of its own, which name no field.
 */
export function sluiceCauseOf(error: TRPCError): SluiceError | undefined {
  if (error.cause instanceof SluiceError) return error.cause;
  if (error.code === 'PARSE_ERROR' && CONNECTION_PARAMS_REFUSALS.has(error.message)) {
    return new SluiceError('invalid_json', 'connectionParams: must be a JSON object whose values are strings');
  }
  if (error.cause instanceof SyntaxError) return inputNotSuperjson();
  return undefined;
}

/**
 * Sluice's code for a tRPC code, for the refusals tRPC's protocol makes itself (a batch too large,
 * say) and those the WebSocket layer makes in tRPC's words: every error a client gets has one.
 * TRPC_CODES read backwards; where several of ours share a tRPC code, the first listed (the
 * general one: `rate_limited`, `unavailable`, `upstream_error`) stands for them.
 */
const SLUICE_CODES = new Map<TRPCCode, ErrorCode>();
for (const [sluice, trpc] of Object.entries(TRPC_CODES) as Array<[ErrorCode, TRPCCode]>) if (!SLUICE_CODES.has(trpc)) SLUICE_CODES.set(trpc, sluice);

/** The sluiceCode a tRPC error carries: its SluiceError's, or the one of its tRPC code. */
export function sluiceCodeOf(error: TRPCError, cause: SluiceError | undefined): ErrorCode | null {
  return cause?.code ?? SLUICE_CODES.get(error.code) ?? null;
}

/** tRPC's refusal of a batch past its bound (`maxBatchSize`), whole, in its words. */
export function batchTooLarge(): TRPCError {
  return new TRPCError({ code: 'BAD_REQUEST', message: 'Batch call exceeds maximum size' });
}
