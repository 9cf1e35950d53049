import { createLocalJWKSet, createRemoteJWKSet, customFetch, errors, type JWTVerifyGetKey } from 'jose';

/** Resolver failures that are the token's fault (its `kid` or `alg`); anything else is the key source's. */
const TOKEN_FAULTS = [errors.JWKSNoMatchingKey, errors.JWKSMultipleMatchingKeys, errors.JOSENotSupported, errors.JOSEAlgNotAllowed];

/** The identity provider's keys could not be had (and none are known): not the token's fault. */
export class KeysUnavailable extends Error {}

export interface JwksKeysOptions {
  readonly url: URL;
  /** A refetch for an unknown `kid` waits this long after the last fetch (jose's cooldown). */
  readonly cooldownMs: number;
  /** After a fetch that failed, the next one waits this long, whatever the tokens ask for. */
  readonly retryMs: number;
  readonly now: () => number;
}

/**
 * The identity provider's JWKS, as jose fetches and caches it, with what jose's remote set does
 * not do when the provider fails. jose counts its cooldown from the last fetch that worked, so
 * while the JWKS fails every token with an unknown `kid` (anyone can make one) would fetch it
 * again, at the rate tokens come; and a cache past its age is fetched before every token, so that
 * valid tokens fail too. Here a failed fetch starts a wait of its own (`retryMs`) in which nothing
 * fetches, and tokens are checked against the keys already known (401 for an unknown `kid`, as
 * when the provider is up); only with no keys known at all is the answer "unavailable".
 */
export function jwksKeys(options: JwksKeysOptions): JWTVerifyGetKey {
  const remote = createRemoteJWKSet(options.url, { cooldownDuration: options.cooldownMs, [customFetch]: boundedFetch });
  let failedAt = Number.NEGATIVE_INFINITY;
  // The keys jose holds, as a local set of our own (jose hands out copies): remade after any call
  // to the remote set, which may have fetched new ones.
  let known: JWTVerifyGetKey | undefined;
  let knownIsCurrent = false;
  const knownKeys = (): JWTVerifyGetKey | undefined => {
    if (!knownIsCurrent) {
      const jwks = remote.jwks();
      known = jwks ? createLocalJWKSet(jwks) : undefined;
      knownIsCurrent = true;
    }
    return known;
  };
  const unavailable = (cause: unknown): KeysUnavailable =>
    new KeysUnavailable(`the JWKS at ${options.url.origin}${options.url.pathname} could not be used: ${(cause as Error).message}`, { cause });

  return async (header, token) => {
    if (options.now() - failedAt < options.retryMs) {
      const keys = knownKeys();
      if (!keys) throw unavailable(new Error('the last fetch failed moments ago'));
      return keys(header, token);
    }
    try {
      knownIsCurrent = false;
      return await remote(header, token);
    } catch (error) {
      knownIsCurrent = false;
      if (TOKEN_FAULTS.some((fault) => error instanceof fault)) throw error;
      failedAt = options.now();
      const keys = knownKeys();
      if (!keys) throw unavailable(error);
      return keys(header, token);
    }
  };
}

/** A JWKS is a few keys, a few kilobytes: one larger than this is refused as it arrives, not read whole. */
const MAX_JWKS_BYTES = 1024 * 1024;

/** jose's fetch, with the body bounded (jose reads a JWKS whole, whatever its size). */
async function boundedFetch(url: string, init: Parameters<typeof fetch>[1]): Promise<Response> {
  const response = await fetch(url, init);
  if (response.status !== 200 || !response.body) return response;
  const tooLarge = (): Error => new Error(`the JWKS is larger than ${MAX_JWKS_BYTES} bytes`);
  if (Number(response.headers.get('content-length')) > MAX_JWKS_BYTES) {
    await response.body.cancel();
    throw tooLarge();
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = response.body.getReader();
  for (let read = await reader.read(); !read.done; read = await reader.read()) {
    size += read.value.byteLength;
    if (size > MAX_JWKS_BYTES) {
      await reader.cancel();
      throw tooLarge();
    }
    chunks.push(read.value);
  }
  return new Response(Buffer.concat(chunks), { status: 200, headers: response.headers });
}
