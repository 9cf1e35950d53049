import { createHash, createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { errors, jwtVerify, type JWTVerifyGetKey } from 'jose';
import { END_USER_PREFIX, type Credentials, type Identity } from '../credentials.ts';
import { SluiceError } from '../errors.ts';
import { jwksKeys, KeysUnavailable } from './jwks-keys.ts';
import { jwksUrlProblem } from './jwks-url.ts';

/** Where the keys that sign end-user tokens come from: exactly one. */
export type TokenKeys =
  /** The identity provider's JWKS: fetched on first use, cached, fetched again for an unknown `kid`. */
  | { readonly jwksUrl: URL }
  /** One public key (or certificate), PEM. */
  | { readonly publicKeyPem: string }
  /** A shared HMAC secret (at least 32 bytes). */
  | { readonly secret: string };

export interface JwtVerifierOptions {
  readonly keys: TokenKeys;
  /** When set, a token's `iss` must be this. */
  readonly issuer?: string | undefined;
  /** When set, a token's `aud` must name one of these. */
  readonly audience?: readonly string[] | undefined;
  /** The claim that names the user, whose sessions the token opens. Default `sub`. */
  readonly ownerClaim?: string;
  /** Leeway for `exp` and `nbf` against clock skew, in seconds. Default 30. */
  readonly clockToleranceSeconds?: number;
  /** JWKS fetching (jose's): a refetch for an unknown `kid` waits this long after the last one. Default 30 s. */
  readonly jwksCooldownMs?: number;
  /** After a JWKS fetch that failed, the next waits this long, whatever tokens come meanwhile. Default 5 s. */
  readonly jwksRetryMs?: number;
  /** Told why a token was refused (never the token), for the logs; the caller only sees a refusal. */
  readonly onRefused?: (reason: string) => void;
  /** The clock `exp` and `nbf` are checked against (tests move it). */
  readonly now?: () => number;
}

/** Algorithms by key type: a key only ever verifies its own family (no `none`, no HS/RS confusion). */
const RSA = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'];
const EC_BY_CURVE: Readonly<Record<string, string>> = { prime256v1: 'ES256', secp384r1: 'ES384', secp521r1: 'ES512' };
const OKP = ['EdDSA', 'Ed25519'];
const ASYMMETRIC = [...RSA, ...Object.values(EC_BY_CURVE), ...OKP];
const HMAC = ['HS256', 'HS384', 'HS512'];

/** Longer than any token an identity provider issues; a bound on what is parsed. */
const MAX_TOKEN_CHARS = 8192;
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const MAX_OWNER_CHARS = 1024;

/**
 * End-user tokens: JWTs signed by the app's identity provider, verified with `jose`. The owner of
 * a token is the user its `ownerClaim` names, under its issuer: `u_` and a hash of both, so that it
 * never collides with an API key's owner (`k_...`), reveals nothing of the claim, and is safe in
 * store keys. `exp` is required; `exp` and `nbf` are checked with a small leeway.
 */
export class JwtVerifier implements Credentials {
  readonly required = true;
  readonly #key: KeyObject | Uint8Array | JWTVerifyGetKey;
  readonly #algorithms: readonly string[];
  readonly #issuer: string | undefined;
  readonly #audience: string[] | undefined;
  readonly #ownerClaim: string;
  readonly #clockTolerance: number;
  readonly #onRefused: (reason: string) => void;
  readonly #now: () => number;

  constructor(options: JwtVerifierOptions) {
    const { keys, ownerClaim = 'sub', clockToleranceSeconds = 30 } = options;
    if (!ownerClaim || /\s/.test(ownerClaim)) throw new RangeError(`JwtVerifier: ownerClaim must be a claim name, got "${ownerClaim}"`);
    if (!Number.isFinite(clockToleranceSeconds) || clockToleranceSeconds < 0 || clockToleranceSeconds > 300) {
      throw new RangeError(`JwtVerifier: clockToleranceSeconds must be 0-300, got ${clockToleranceSeconds}`);
    }
    if (options.issuer === '') throw new RangeError('JwtVerifier: issuer must not be empty');
    if (options.audience?.length === 0 || options.audience?.includes('')) throw new RangeError('JwtVerifier: audience must list non-empty values');
    if ('jwksUrl' in keys) {
      assertJwksUrl(keys.jwksUrl);
      this.#key = jwksKeys({
        url: keys.jwksUrl,
        cooldownMs: options.jwksCooldownMs ?? 30_000,
        retryMs: options.jwksRetryMs ?? 5_000,
        now: options.now ?? Date.now,
      });
      this.#algorithms = ASYMMETRIC;
    } else if ('publicKeyPem' in keys) {
      const key = publicKeyFromPem(keys.publicKeyPem);
      this.#key = key;
      this.#algorithms = algorithmsFor(key);
    } else {
      const secret = new TextEncoder().encode(keys.secret);
      if (secret.length < 32) throw new RangeError('JwtVerifier: the HMAC secret must be at least 32 bytes');
      this.#key = secret;
      this.#algorithms = HMAC;
    }
    this.#issuer = options.issuer;
    this.#audience = options.audience ? [...options.audience] : undefined;
    this.#ownerClaim = ownerClaim;
    this.#clockTolerance = clockToleranceSeconds;
    this.#onRefused = options.onRefused ?? (() => undefined);
    this.#now = options.now ?? Date.now;
  }

  async ownerOf(credential: string | undefined): Promise<string | undefined> {
    return (await this.identityOf(credential))?.owner;
  }

  /**
   * The owner, and the expiry: `exp` plus the leeway, on the clock `exp` is checked against. jose
   * refuses a token once `exp + leeway <= now` in whole seconds (`now` rounded down), which is
   * `now() >= at` here (an `exp` with a fraction rounded up, as that comparison does).
   */
  async identityOf(credential: string | undefined): Promise<Identity | undefined> {
    if (!credential || credential.length > MAX_TOKEN_CHARS || !COMPACT_JWS.test(credential)) return undefined;
    let payload;
    try {
      ({ payload } = await jwtVerify(credential, this.#key, {
        algorithms: [...this.#algorithms],
        issuer: this.#issuer,
        audience: this.#audience,
        clockTolerance: this.#clockTolerance,
        currentDate: new Date(this.#now()),
        requiredClaims: ['exp', this.#ownerClaim],
      }));
    } catch (error) {
      // The identity provider's keys cannot be had: not the caller's fault, and not a 401.
      if (error instanceof KeysUnavailable) throw new SluiceError('unavailable', "The identity provider's keys could not be fetched", { cause: error });
      this.#onRefused(error instanceof errors.JOSEError ? `${error.code}: ${error.message}` : String(error));
      return undefined;
    }
    const user = payload[this.#ownerClaim];
    const name = typeof user === 'string' ? user : typeof user === 'number' && Number.isSafeInteger(user) ? String(user) : undefined;
    if (!name || name.length > MAX_OWNER_CHARS) {
      this.#onRefused(`the "${this.#ownerClaim}" claim is not a usable user id`);
      return undefined;
    }
    // Checked by jose only when an issuer is required; the owner is named under it either way.
    if (payload.iss !== undefined && typeof payload.iss !== 'string') {
      this.#onRefused('the "iss" claim is not a string');
      return undefined;
    }
    const hash = createHash('sha256')
      .update(payload.iss ?? '', 'utf8')
      .update('\0')
      .update(name, 'utf8')
      .digest();
    // `exp` is required, so jose has checked it is a number.
    const at = Math.ceil((payload.exp as number) + this.#clockTolerance) * 1000;
    return { owner: `${END_USER_PREFIX}${hash.subarray(0, 12).toString('hex')}`, expiry: { at, now: this.#now } };
  }
}

function assertJwksUrl(url: URL): void {
  const problem = jwksUrlProblem(url);
  if (problem) throw new RangeError(`JwtVerifier: the JWKS URL ${problem}`);
}

function publicKeyFromPem(pem: string): KeyObject {
  if (/PRIVATE KEY/.test(pem)) throw new RangeError('JwtVerifier: that PEM holds a private key; give the public key');
  try {
    return /BEGIN CERTIFICATE/.test(pem) ? new X509Certificate(pem).publicKey : createPublicKey(pem);
  } catch (error) {
    throw new RangeError(`JwtVerifier: not a PEM public key or certificate (${(error as Error).message})`, { cause: error });
  }
}

function algorithmsFor(key: KeyObject): readonly string[] {
  const type = key.asymmetricKeyType;
  switch (type) {
    case 'rsa':
    case 'rsa-pss': {
      const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
      if (bits < 2048) throw new RangeError(`JwtVerifier: RSA keys must have at least 2048 bits, this one has ${bits}`);
      return type === 'rsa' ? RSA : RSA.filter((alg) => alg.startsWith('PS'));
    }
    case 'ec': {
      const alg = EC_BY_CURVE[key.asymmetricKeyDetails?.namedCurve ?? ''];
      if (!alg) throw new RangeError(`JwtVerifier: unsupported EC curve ${key.asymmetricKeyDetails?.namedCurve}`);
      return [alg];
    }
    case 'ed25519':
      return OKP;
    default:
      throw new RangeError(`JwtVerifier: unsupported key type ${type}`);
  }
}
