import { createTRPCClient, createWSClient, httpBatchLink, httpSubscriptionLink, splitLink, TRPCClientError, wsLink, type TRPCClient } from '@trpc/client';
import { EventSource } from 'eventsource';
import { generateKeyPair, exportSPKI, SignJWT } from 'jose';
import OpenAI from 'openai';
import superjson from 'superjson';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { JwtVerifier } from '../server/core/auth/jwt-verifier.ts';
import type { AppRouter } from '../server/router-type.ts';
import { ErrorBody, SessionHistory, type StreamEvent } from '../shared/index.ts';
import { AUDIENCE, b64, ISSUER, startIdentityProvider, type IdentityProvider } from './helpers/identity-provider.ts';
import { startServer } from './helpers/server.ts';
import { streamSseRoute, type SseFrame } from './helpers/sse.ts';
import { collectStream } from './helpers/trpc-clients.ts';

const KEY = 'tenant-key-0123456789abcdef';

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

async function tokenServer(idp: IdentityProvider, settings: Record<string, string | number> = {}) {
  return startServer({ AUTH_JWKS_URL: idp.jwksUrl, AUTH_JWT_ISSUER: ISSUER, AUTH_JWT_AUDIENCE: `other-app,${AUDIENCE}`, ...settings });
}

/** A stock tRPC client that shows the token as a browser would: connectionParams on WebSocket and SSE, no header there. */
function tokenClient(url: string, transport: 'ws' | 'sse', token: string): TRPCClient<AppRouter> {
  if (transport === 'ws') {
    const wsClient = createWSClient({ url: `${url.replace('http:', 'ws:')}/trpc`, WebSocket: WebSocket as never, connectionParams: { token } });
    closers.push(() => wsClient.close());
    return createTRPCClient<AppRouter>({ links: [wsLink({ client: wsClient, transformer: superjson })] });
  }
  return createTRPCClient<AppRouter>({
    links: [
      splitLink({
        condition: (op) => op.type === 'subscription',
        true: httpSubscriptionLink({ url: `${url}/trpc`, transformer: superjson, EventSource, connectionParams: { token } }),
        false: httpBatchLink({ url: `${url}/trpc`, transformer: superjson, headers: { authorization: `Bearer ${token}` } }),
      }),
    ],
  });
}

async function stream(client: TRPCClient<AppRouter>, message: string, sessionId: string): Promise<StreamEvent[]> {
  return (await collectStream(client, { message, sessionId })).events;
}

const bearer = (credential: string) => ({ authorization: `Bearer ${credential}` });

async function history(url: string, session: string, credential: string): Promise<string[]> {
  const res = await fetch(`${url}/v1/sessions/${session}/messages`, { headers: bearer(credential) });
  expect(res.status).toBe(200);
  return SessionHistory.parse(await res.json()).messages.map((m) => m.content);
}

async function frames(iterable: AsyncIterable<SseFrame>): Promise<SseFrame[]> {
  const out: SseFrame[] = [];
  for await (const frame of iterable) out.push(frame);
  return out;
}

describe('end-user tokens (JWTs from a JWKS)', () => {
  it('a valid token streams on the SSE route, the OpenAI route, tRPC over WebSocket and tRPC over SSE (connectionParams, no header)', async () => {
    const idp = await startIdentityProvider();
    const { url } = await tokenServer(idp);
    const token = await idp.token('alice');

    const sse = await frames(streamSseRoute(url, { message: 'via sse route', session_id: 'a' }, { headers: bearer(token) }));
    expect(JSON.parse(sse.at(-1)!.data)).toMatchObject({ done: true });

    const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: token, maxRetries: 0, defaultHeaders: { 'x-sluice-session': 'a' } });
    const completion = await openai.chat.completions.create({ model: 'sluice-sim', messages: [{ role: 'user', content: 'via openai' }] });
    expect(completion.choices[0]?.finish_reason).toBe('stop');

    for (const transport of ['ws', 'sse'] as const) {
      const client = tokenClient(url, transport, token);
      const events = await stream(client, `via trpc ${transport}`, 'a');
      expect(events.at(-1)?.type).toBe('done');
      expect((await client.chat.history.query({ sessionId: 'a' })).messages.length).toBeGreaterThan(0);
    }
    expect(await history(url, 'a', token)).toEqual(expect.arrayContaining(['via sse route', 'via openai', 'via trpc ws', 'via trpc sse']));
    // Keys were fetched once and cached.
    expect(idp.fetches()).toBe(1);
  });

  it("each user sees only their sessions, apart from API keys' too, on every transport", async () => {
    const idp = await startIdentityProvider();
    const { url } = await tokenServer(idp, { API_KEYS: KEY });
    const alice = await idp.token('alice');
    const bob = await idp.token('bob');
    await frames(streamSseRoute(url, { message: 'alice writes', session_id: 'same' }, { headers: bearer(alice) }));
    await frames(streamSseRoute(url, { message: 'key writes', session_id: 'same' }, { headers: bearer(KEY) }));

    expect(await history(url, 'same', alice)).toContain('alice writes');
    expect(await history(url, 'same', bob)).toEqual([]);
    expect(await history(url, 'same', KEY)).not.toContain('alice writes');
    // A second token for the same user (a refresh) opens the same sessions.
    expect(await history(url, 'same', await idp.token('alice', { expiresIn: 1200 }))).toContain('alice writes');
    for (const transport of ['ws', 'sse'] as const) {
      const client = tokenClient(url, transport, bob);
      expect((await client.chat.history.query({ sessionId: 'same' })).messages).toEqual([]);
      expect(await client.chat.cancel.mutate({ sessionId: 'same' })).toEqual({ cancelled: false });
    }
  });

  it("/metrics is the operator's: an API key reads it, an end user's valid token gets the same 401 as a bad credential", async () => {
    const idp = await startIdentityProvider();
    const { url } = await tokenServer(idp, { API_KEYS: KEY });
    const withKey = await fetch(`${url}/metrics`, { headers: bearer(KEY) });
    expect(withKey.status).toBe(200);
    expect(await withKey.text()).toMatch(/sluice_/);
    const withToken = await fetch(`${url}/metrics`, { headers: bearer(await idp.token('alice')) });
    const withBad = await fetch(`${url}/metrics`, { headers: bearer('not-a-credential') });
    expect([withToken.status, withBad.status]).toEqual([401, 401]);
    expect(await withToken.text()).toBe(await withBad.text());
  });

  it('every bad token is the same 401 (UNAUTHORIZED over tRPC), whatever is wrong with it', async () => {
    const idp = await startIdentityProvider();
    const { url } = await tokenServer(idp);
    const now = Math.floor(Date.now() / 1000);
    const good = await idp.token('mallory');
    const [header, payload, signature] = good.split('.') as [string, string, string];
    await idp.unpublishedKey('rogue');
    const hmacWithPublicKey = await new SignJWT({ sub: 'mallory', iss: ISSUER, aud: AUDIENCE, exp: now + 600 })
      .setProtectedHeader({ alg: 'HS256', kid: 'key-1' })
      .sign(new TextEncoder().encode(idp.publicPem));
    const bad: Record<string, string> = {
      expired: await idp.token('mallory', { expiresIn: -120 }),
      'not yet valid': await idp.token('mallory', { claims: { nbf: now + 300 } }),
      'wrong issuer': await idp.token('mallory', { claims: { iss: 'https://other.example/' } }),
      'wrong audience': await idp.token('mallory', { claims: { aud: 'someone-else' } }),
      'no exp': await idp.token('mallory', { claims: { exp: undefined } }),
      'no sub': await idp.token('mallory', { claims: { sub: undefined } }),
      'alg none': `${b64({ alg: 'none', typ: 'JWT' })}.${payload}.`,
      'alg none, with a signature': `${b64({ alg: 'none', typ: 'JWT' })}.${payload}.${signature}`,
      'HS256 signed with the RSA public key': hmacWithPublicKey,
      'unknown kid': await idp.token('mallory', { kid: 'rogue' }),
      'tampered payload': `${header}.${b64({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), sub: 'alice' })}.${signature}`,
      garbage: 'not-a-token-at-all',
      'three garbage parts': 'a.b.c',
    };
    const bodies = new Set<string>();
    for (const [name, token] of Object.entries(bad)) {
      const res = await fetch(`${url}/v1/chat/stream`, {
        method: 'POST',
        headers: { ...bearer(token), 'content-type': 'application/json' },
        body: '{"message":"hi"}',
      });
      expect(res.status, name).toBe(401);
      expect(res.headers.get('www-authenticate'), name).toBe('Bearer');
      bodies.add(await res.text());
      const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: token, maxRetries: 0 });
      await expect(openai.models.list(), name).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    }
    expect(bodies.size).toBe(1);
    expect(ErrorBody.parse(JSON.parse([...bodies][0]!)).error).toEqual({ code: 'unauthorized', message: 'A valid API key or token is required' });

    for (const transport of ['ws', 'sse'] as const) {
      for (const name of ['expired', 'unknown kid', 'alg none', 'HS256 signed with the RSA public key']) {
        const error = await stream(tokenClient(url, transport, bad[name]!), 'hi', 's').catch((e: unknown) => e);
        expect(error, `${transport}: ${name}`).toBeInstanceOf(TRPCClientError);
        expect((error as TRPCClientError<AppRouter>).data?.code, `${transport}: ${name}`).toBe('UNAUTHORIZED');
      }
    }
  });

  it('an identity provider that cannot be reached is a 503, not a 401', async () => {
    const idp = await startIdentityProvider();
    const token = await idp.token('alice');
    const { url } = await startServer({ AUTH_JWKS_URL: 'http://127.0.0.1:9/.well-known/jwks.json' });
    const res = await fetch(`${url}/v1/sessions/s/messages`, { headers: bearer(token) });
    expect(res.status).toBe(503);
    expect(ErrorBody.parse(await res.json()).error.code).toBe('unavailable');
    // Garbage is refused before any key is needed.
    expect((await fetch(`${url}/v1/sessions/s/messages`, { headers: bearer('garbage') })).status).toBe(401);
  });
});

describe('an identity provider that hangs', () => {
  it('is the same 503 unavailable over WebSocket as over HTTP, not a missing credential when the auth window ends first', async () => {
    const idp = await startIdentityProvider();
    const token = await idp.token('alice');
    idp.failWith('hang');
    const { url } = await tokenServer(idp, { WS_AUTH_TIMEOUT_MS: 300 });
    const ws = new WebSocket(`${url.replace('http:', 'ws:')}/trpc?connectionParams=1`);
    const messages: Array<{ id: unknown; error?: { json: { data: { code: string; sluiceCode: string } } } }> = [];
    ws.on('message', (data) => messages.push(JSON.parse(String(data))));
    const closed = once(ws, 'close');
    await once(ws, 'open');
    ws.send(JSON.stringify({ method: 'connectionParams', data: { token } }));
    await closed;
    expect(messages).toMatchObject([{ id: null, error: { json: { data: { sluiceCode: 'unavailable' } } } }]);
    const res = await fetch(`${url}/v1/sessions/s/messages`, { headers: bearer(token) });
    expect(res.status).toBe(503);
  });
});

describe('an identity provider whose JWKS is huge', () => {
  it('is unavailable, not read whole: a JWKS is a few keys, and one past 1 MiB is refused as it arrives', async () => {
    const idp = await startIdentityProvider();
    const token = await idp.token('alice');
    // The provider's real keys, padded past any JWKS's size (as a misconfigured URL might serve).
    const jwks = (await (await fetch(idp.jwksUrl)).json()) as { keys: unknown[] };
    const padded = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(`{"keys":${JSON.stringify(jwks.keys)},"padding":"${'x'.repeat(4 * 1024 * 1024)}"}`);
    });
    padded.listen(0, '127.0.0.1');
    await once(padded, 'listening');
    try {
      const { port } = padded.address() as AddressInfo;
      const verifier = new JwtVerifier({ keys: { jwksUrl: new URL(`http://127.0.0.1:${port}/jwks.json`) } });
      await expect(verifier.ownerOf(token)).rejects.toMatchObject({ code: 'unavailable' });
    } finally {
      padded.closeAllConnections();
      padded.close();
    }
  });
});

describe('a token that expires during a reply', () => {
  it('does not cut the reply; the next call needs a valid token', async () => {
    const idp = await startIdentityProvider();
    let clock = Date.now();
    const credentials = new JwtVerifier({ keys: { jwksUrl: new URL(idp.jwksUrl) }, now: () => clock });
    const { url } = await startServer({ SIM_DELAY_MS: 10 }, { credentials });
    for (const transport of ['ws', 'sse'] as const) {
      const token = await idp.token('alice', { at: clock, expiresIn: 60 });
      const client = tokenClient(url, transport, token);
      const events = await new Promise<StreamEvent[]>((resolve, reject) => {
        const seen: StreamEvent[] = [];
        const sub = client.chat.stream.subscribe(
          { message: 'a long answer', sessionId: `expiry-${transport}` },
          {
            onData: ({ data }) => {
              if (data.type === 'start') return;
              seen.push(data);
              // The token runs out while the reply streams.
              if (seen.length === 1) clock += 10 * 60_000;
              if (data.type !== 'delta') {
                sub.unsubscribe();
                resolve(seen);
              }
            },
            onError: reject,
          },
        );
      });
      expect(events.at(-1)?.type).toBe('done');
      expect(events.length).toBeGreaterThan(10);
      const refused = await client.chat.history.query({ sessionId: `expiry-${transport}` }).catch((e: unknown) => e);
      expect((refused as TRPCClientError<AppRouter>).data?.code).toBe('UNAUTHORIZED');
      const fresh = tokenClient(url, transport, await idp.token('alice', { at: clock }));
      expect((await fresh.chat.history.query({ sessionId: `expiry-${transport}` })).messages.map((m) => m.status)).toEqual(['complete', 'complete']);
    }
  });
});

describe('JwtVerifier', () => {
  it('fetches the JWKS again for an unknown kid (a rotation), at most once per cooldown', async () => {
    const idp = await startIdentityProvider();
    const verifier = new JwtVerifier({ keys: { jwksUrl: new URL(idp.jwksUrl) }, jwksCooldownMs: 0 });
    expect(await verifier.ownerOf(await idp.token('alice'))).toMatch(/^u_[0-9a-f]{24}$/);
    expect(idp.fetches()).toBe(1);
    await idp.unpublishedKey('key-2');
    const rotated = await idp.token('alice', { kid: 'key-2' });
    expect(await verifier.ownerOf(rotated)).toBeUndefined();
    expect(idp.fetches()).toBe(2);
    idp.publish('key-2');
    // The same user under the new key is the same owner.
    expect(await verifier.ownerOf(rotated)).toBe(await verifier.ownerOf(await idp.token('alice')));
    expect(idp.fetches()).toBe(3);

    const cooling = new JwtVerifier({ keys: { jwksUrl: new URL(idp.jwksUrl) } });
    await idp.unpublishedKey('rogue');
    const rogue = await idp.token('x', { kid: 'rogue' });
    await cooling.ownerOf(await idp.token('alice'));
    const before = idp.fetches();
    for (let i = 0; i < 5; i++) expect(await cooling.ownerOf(rogue)).toBeUndefined();
    expect(idp.fetches()).toBe(before);
  });

  it('a failing JWKS is fetched again at most once per retry wait, however many unknown kids come; known keys go on verifying', async () => {
    const idp = await startIdentityProvider();
    let clock = Date.now();
    const verifier = new JwtVerifier({ keys: { jwksUrl: new URL(idp.jwksUrl) }, jwksCooldownMs: 0, jwksRetryMs: 5_000, now: () => clock });
    const alice = await idp.token('alice');
    const owner = await verifier.ownerOf(alice);
    expect(owner).toMatch(/^u_/);
    expect(idp.fetches()).toBe(1);

    idp.failWith(500);
    // Tokens anyone can make: a random kid, and no valid signature needed to reach the key lookup.
    const madeUp = (i: number) => `${b64({ alg: 'RS256', kid: `made-up-${i}` })}.${b64({ sub: 'x' })}.AAAA`;
    for (let i = 0; i < 20; i++) expect(await verifier.ownerOf(madeUp(i))).toBeUndefined();
    expect(idp.fetches()).toBe(2);
    // The keys it had still verify the tokens they signed.
    expect(await verifier.ownerOf(alice)).toBe(owner);
    expect(idp.fetches()).toBe(2);

    clock += 5_000;
    expect(await verifier.ownerOf(madeUp(99))).toBeUndefined();
    expect(idp.fetches()).toBe(3);

    // Back up, after the wait: a rotated key is fetched and accepted.
    idp.failWith(undefined);
    await idp.unpublishedKey('key-2');
    idp.publish('key-2');
    clock += 5_000;
    expect(await verifier.ownerOf(await idp.token('alice', { kid: 'key-2', at: clock }))).toBe(owner);
    expect(idp.fetches()).toBe(4);
  });

  it('a JWKS that fails at first use answers unavailable, and is not fetched again before the retry wait', async () => {
    const idp = await startIdentityProvider();
    idp.failWith(503);
    let clock = Date.now();
    const verifier = new JwtVerifier({ keys: { jwksUrl: new URL(idp.jwksUrl) }, jwksRetryMs: 5_000, now: () => clock });
    const token = await idp.token('alice');
    for (let i = 0; i < 10; i++) await expect(verifier.ownerOf(token)).rejects.toMatchObject({ code: 'unavailable' });
    expect(idp.fetches()).toBe(1);
    idp.failWith(undefined);
    clock += 5_000;
    expect(await verifier.ownerOf(token)).toMatch(/^u_/);
    expect(idp.fetches()).toBe(2);
  });

  it('owners: the claim under its issuer, never an API key owner, safe in store keys', async () => {
    const idp = await startIdentityProvider();
    const verifier = new JwtVerifier({ keys: { jwksUrl: new URL(idp.jwksUrl) } });
    const alice = await verifier.ownerOf(await idp.token('alice'));
    const otherIssuer = await verifier.ownerOf(await idp.token('alice', { claims: { iss: 'https://elsewhere.example/' } }));
    const braces = await verifier.ownerOf(await idp.token('{tag}'));
    expect(alice).not.toBe(otherIssuer);
    for (const owner of [alice, otherIssuer, braces]) expect(owner).toMatch(/^u_[0-9a-f]{24}$/);
    const byEmail = new JwtVerifier({ keys: { jwksUrl: new URL(idp.jwksUrl) }, ownerClaim: 'email' });
    expect(await byEmail.ownerOf(await idp.token('alice', { claims: { email: 'a@example.com' } }))).toMatch(/^u_/);
    expect(await byEmail.ownerOf(await idp.token('alice'))).toBeUndefined();
    // Signed, but with an issuer that is not a string (no issuer is required): refused like any bad token.
    for (const iss of [123, ['a'], { a: 1 }]) expect(await verifier.ownerOf(await idp.token('alice', { claims: { iss } }))).toBeUndefined();
  });

  it("a token's expiry is `exp` plus the leeway, on the verifier's clock: refused from that very millisecond, not one before", async () => {
    const idp = await startIdentityProvider();
    let clock = Date.now();
    const verifier = new JwtVerifier({ keys: { jwksUrl: new URL(idp.jwksUrl) }, clockToleranceSeconds: 30, now: () => clock });
    const exp = Math.floor(clock / 1000) + 60;
    const token = await idp.token('alice', { claims: { exp } });
    const identity = await verifier.identityOf(token);
    expect(identity?.expiry?.at).toBe((exp + 30) * 1000);
    clock = (exp + 30) * 1000 - 1;
    expect(identity?.expiry?.now()).toBe(clock);
    expect(await verifier.ownerOf(token)).toBe(identity?.owner);
    clock += 1;
    expect(await verifier.ownerOf(token)).toBeUndefined();
  });

  it('a PEM key verifies only its own algorithm family; an HMAC secret only HS*', async () => {
    const rsa = await generateKeyPair('RS256', { extractable: true });
    const ec = await generateKeyPair('ES256', { extractable: true });
    const exp = Math.floor(Date.now() / 1000) + 600;
    const sign = (alg: string, key: Parameters<SignJWT['sign']>[0]) => new SignJWT({ sub: 'u', exp }).setProtectedHeader({ alg }).sign(key);
    const rsaPem = await exportSPKI(rsa.publicKey);
    const byRsa = new JwtVerifier({ keys: { publicKeyPem: rsaPem } });
    expect(await byRsa.ownerOf(await sign('RS256', rsa.privateKey))).toMatch(/^u_/);
    expect(await byRsa.ownerOf(await sign('HS256', new TextEncoder().encode(rsaPem)))).toBeUndefined();
    expect(await byRsa.ownerOf(await sign('ES256', ec.privateKey))).toBeUndefined();

    const byEc = new JwtVerifier({ keys: { publicKeyPem: await exportSPKI(ec.publicKey) } });
    expect(await byEc.ownerOf(await sign('ES256', ec.privateKey))).toMatch(/^u_/);
    expect(await byEc.ownerOf(await sign('RS256', rsa.privateKey))).toBeUndefined();

    const secret = 'a-shared-secret-of-at-least-32-bytes!';
    const byHmac = new JwtVerifier({ keys: { secret } });
    expect(await byHmac.ownerOf(await sign('HS256', new TextEncoder().encode(secret)))).toMatch(/^u_/);
    expect(await byHmac.ownerOf(await sign('HS256', new TextEncoder().encode(`${secret}x`)))).toBeUndefined();
    expect(await byHmac.ownerOf(await sign('RS256', rsa.privateKey))).toBeUndefined();
  });

  it('refuses bad settings at construction', async () => {
    const rsa = await generateKeyPair('RS256', { extractable: true });
    expect(() => new JwtVerifier({ keys: { secret: 'short' } })).toThrow('at least 32 bytes');
    expect(() => new JwtVerifier({ keys: { publicKeyPem: 'nonsense' } })).toThrow('not a PEM public key');
    expect(() => new JwtVerifier({ keys: { publicKeyPem: '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----' } })).toThrow('private key');
    expect(() => new JwtVerifier({ keys: { jwksUrl: new URL('http://id.example.com/jwks.json') } })).toThrow('https://');
    expect(() => new JwtVerifier({ keys: { publicKeyPem: '' }, ownerClaim: '' })).toThrow('ownerClaim');
    expect(() => new JwtVerifier({ keys: { publicKeyPem: '' }, clockToleranceSeconds: -1 })).toThrow('clockToleranceSeconds');
    expect(new JwtVerifier({ keys: { publicKeyPem: await exportSPKI(rsa.publicKey) } }).required).toBe(true);
  });
});
