import type { TRPCRequestInfo } from '@trpc/server/http';

/**
 * The credential a client put in tRPC's `connectionParams`: `{ token }` (an end-user token) or
 * `{ apiKey }`. Over WebSocket they are the connection's first message; over SSE they are the
 * `connectionParams` query parameter, since EventSource cannot send headers. Either is checked as
 * any other credential, through the admission.
 */
export function credentialFromParams(params: TRPCRequestInfo['connectionParams']): string | undefined {
  const value = params?.['token'] ?? params?.['apiKey'];
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}
