import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { afterEach } from 'vitest';

export const ISSUER = 'https://id.example.test/';
export const AUDIENCE = 'sluice-tests';

interface SigningKey {
  readonly kid: string;
  readonly privateKey: CryptoKey;
  readonly publicJwk: JWK;
  readonly publicPem: string;
}

export interface TokenOptions {
  /** Claims besides the defaults (`iss`, `aud`, `sub`, `iat`, `exp` in 10 minutes); `undefined` removes one. */
  readonly claims?: Record<string, unknown>;
  /** Sign with this key id (default: the first key), whether or not the JWKS lists it. */
  readonly kid?: string;
  /** Seconds from now (or from `at`) of `exp`. */
  readonly expiresIn?: number;
  /** The clock the token is made at, in ms (default: now). */
  readonly at?: number;
}

export interface IdentityProvider {
  /** `http://127.0.0.1:<port>/.well-known/jwks.json` */
  readonly jwksUrl: string;
  /** How many times the JWKS was fetched. */
  fetches(): number;
  /** A token for `sub`, signed RS256 with one of the provider's keys. */
  token(sub: string, options?: TokenOptions): Promise<string>;
  /** A key signed with but not (yet) published. */
  unpublishedKey(kid: string): Promise<void>;
  /** Publishes a key made with `unpublishedKey` (a key rotation). */
  publish(kid: string): void;
  /** The first key's public key, PEM (SPKI). */
  readonly publicPem: string;
  /** From now on the JWKS is answered with this status and no keys, or not at all (`hang`); undefined: served again. */
  failWith(status: number | 'hang' | undefined): void;
}

const servers = new Set<ReturnType<typeof createServer>>();
afterEach(async () => {
  for (const server of [...servers]) {
    servers.delete(server);
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

async function makeKey(kid: string): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  return { kid, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' }, publicPem: await exportSPKI(publicKey) };
}

/** An identity provider of the tests' own: RSA keys made with jose, a JWKS served over HTTP, tokens signed on demand. */
export async function startIdentityProvider(): Promise<IdentityProvider> {
  const keys = new Map<string, SigningKey>();
  const published = new Set<string>();
  const first = await makeKey('key-1');
  keys.set(first.kid, first);
  published.add(first.kid);
  let fetches = 0;
  let failing: number | 'hang' | undefined;
  const server = createServer((req, res) => {
    if (req.url !== '/.well-known/jwks.json') {
      res.writeHead(404).end();
      return;
    }
    fetches++;
    if (failing === 'hang') return;
    if (failing !== undefined) {
      res.writeHead(failing).end('down');
      return;
    }
    const body = JSON.stringify({ keys: [...published].map((kid) => keys.get(kid)!.publicJwk) });
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(body);
  });
  servers.add(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    jwksUrl: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    fetches: () => fetches,
    publicPem: first.publicPem,
    token: async (sub, options = {}) => {
      const key = keys.get(options.kid ?? first.kid);
      if (!key) throw new Error(`no key ${options.kid}`);
      const at = Math.floor((options.at ?? Date.now()) / 1000);
      const claims: JWTPayload = { iss: ISSUER, aud: AUDIENCE, sub, iat: at, exp: at + (options.expiresIn ?? 600), ...options.claims };
      for (const [name, value] of Object.entries(claims)) if (value === undefined) delete claims[name];
      return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: key.kid, typ: 'JWT' }).sign(key.privateKey);
    },
    unpublishedKey: async (kid) => {
      keys.set(kid, await makeKey(kid));
    },
    publish: (kid) => {
      published.add(kid);
    },
    failWith: (status) => {
      failing = status;
    },
  };
}

/** base64url of a JSON value, for hand-made tokens. */
export const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');
