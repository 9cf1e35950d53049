import type { Logger } from 'pino';
import type { Config } from '../config.ts';
import { ApiKeys } from '../core/api-keys.ts';
import { AnyCredential } from '../core/auth/any-credential.ts';
import { JwtVerifier, type TokenKeys } from '../core/auth/jwt-verifier.ts';
import type { Credentials } from '../core/credentials.ts';

export interface ConfiguredCredentials {
  readonly credentials: Credentials;
  /** The API keys among them, whose file SIGHUP reads again. */
  readonly keys: ApiKeys;
}

/** The credentials the configuration turns on: API keys, end-user tokens, both, or neither (anyone is `anonymous`). */
export function credentialsFrom(config: Config, logger?: Logger): ConfiguredCredentials {
  const keys = new ApiKeys({ file: config.API_KEYS_FILE, list: config.API_KEYS });
  const tokenKeys = tokenKeysFrom(config);
  if (!tokenKeys) return { credentials: keys, keys };
  const tokens = new JwtVerifier({
    keys: tokenKeys,
    issuer: config.AUTH_JWT_ISSUER,
    audience: config.AUTH_JWT_AUDIENCE?.split(',').map((a) => a.trim()),
    ownerClaim: config.AUTH_JWT_OWNER_CLAIM,
    // Every refusal is the same 401 to the caller; the reason is for whoever sets up the provider.
    onRefused: (reason) => logger?.debug({ reason }, 'token refused'),
  });
  return { credentials: new AnyCredential([keys, tokens]), keys };
}

function tokenKeysFrom(config: Config): TokenKeys | undefined {
  if (config.AUTH_JWKS_URL) return { jwksUrl: new URL(config.AUTH_JWKS_URL) };
  // A PEM in an environment variable often has its line ends written as `\n`.
  if (config.AUTH_JWT_PUBLIC_KEY) return { publicKeyPem: config.AUTH_JWT_PUBLIC_KEY.replaceAll('\\n', '\n') };
  if (config.AUTH_JWT_SECRET) return { secret: config.AUTH_JWT_SECRET };
  return undefined;
}
