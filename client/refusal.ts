import { TRPCClientError } from '@trpc/client';
import { TRPC_ERROR_CODES_BY_KEY } from '@trpc/server/rpc';
import type { AppRouter, SluiceErrorShape } from '../shared/app-router.ts';

/** The refusals the client makes itself, with the tRPC code and HTTP status the server gives each. */
const REFUSALS = {
  invalid_request: ['BAD_REQUEST', 400],
  forbidden: ['FORBIDDEN', 403],
  not_found: ['NOT_FOUND', 404],
  cancelled: ['CLIENT_CLOSED_REQUEST', 499],
  unavailable: ['SERVICE_UNAVAILABLE', 503],
} as const;

/**
 * A refusal by the client itself (nothing reached the server, or the server stayed away), shaped
 * as the server's are: an app reads `error.data.sluiceCode` (and `code`, `httpStatus`) one way,
 * whoever refused.
 */
export function clientRefusal(sluiceCode: keyof typeof REFUSALS, message: string): TRPCClientError<AppRouter> {
  const [code, httpStatus] = REFUSALS[sluiceCode];
  const shape: SluiceErrorShape = { message, code: TRPC_ERROR_CODES_BY_KEY[code], data: { code, httpStatus, sluiceCode } };
  return TRPCClientError.from<AppRouter>({ error: shape });
}

/**
 * A connection the server answered 403 (a host or page its origin policy refuses) or 404 (nothing
 * there) before any call reached tRPC, typed as the server's refusals are; undefined for any other
 * status. `what` names the connection ("WebSocket connection", "stream").
 */
export function statusRefusal(status: string, what: string): TRPCClientError<AppRouter> | undefined {
  if (status === '403') return clientRefusal('forbidden', `The server refused the ${what} (403): this page or host is not allowed there`);
  if (status === '404') return clientRefusal('not_found', `The server has no ${what === 'stream' ? 'tRPC stream' : 'WebSocket'} at this address (404)`);
  return undefined;
}
