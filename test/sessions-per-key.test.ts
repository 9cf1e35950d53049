import { TRPCClientError } from '@trpc/client';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import type { AppRouter } from '../server/router-type.ts';
import { ErrorBody, OpenAIErrorBody } from '../shared/index.ts';
import { startPostgres } from './helpers/postgres.ts';
import { startRedis } from './helpers/redis.ts';
import { startServer } from './helpers/server.ts';
import { collectStream, stockClient, type Kind } from './helpers/trpc-clients.ts';

// The sessions hunt: one key made 20,000 sessions in 15.6 s, bounded only by retention (and, in
// memory, by one LRU shared by every key, so that one key pushed out everyone's history). A key
// holds at most MAX_SESSIONS_PER_KEY sessions: a turn in a new one beyond it is refused, on every
// transport, and nothing already kept is dropped to make room.

const KEY = 'sessions-key-0123456789abcdef';
const OTHER = 'sessions-other-0123456789abcdef';
const auth = (key: string | undefined): Record<string, string> => (key === undefined ? {} : { authorization: `Bearer ${key}` });
const LIMIT_MESSAGE = /3 sessions.*delete one/;

const post = (url: string, key: string | undefined, session: string) =>
  fetch(`${url}/v1/chat/stream`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...auth(key) },
    body: JSON.stringify({ message: 'hi', session_id: session }),
  });

/** A turn in `session` over the SSE route: its status, and its error body when refused. */
async function turn(
  url: string,
  key: string | undefined,
  session: string,
): Promise<{ status: number; error?: { code: string; message: string }; headers?: Headers }> {
  const res = await post(url, key, session);
  const text = await res.text();
  return res.status === 200 ? { status: 200 } : { status: res.status, error: ErrorBody.parse(JSON.parse(text)).error, headers: res.headers };
}

async function trpcRefusal(url: string, kind: Kind, sessionId: string): Promise<unknown> {
  const { client } = stockClient(url, kind, { apiKey: KEY });
  const error = await collectStream(client, { message: 'hi', sessionId }).then(
    () => new Error('the stream was accepted'),
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(TRPCClientError);
  const { data, message } = error as TRPCClientError<AppRouter>;
  return { code: data?.code, sluiceCode: data?.sluiceCode, message };
}

const completion = (url: string, session: string | undefined) =>
  fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...auth(KEY), ...(session ? { 'x-sluice-session': session } : {}) },
    body: JSON.stringify({ model: 'm', stream: false, messages: [{ role: 'user', content: 'hi' }] }),
  });

const uiChat = (url: string, chatId: string) =>
  fetch(`${url}/v1/ui/chat`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...auth(KEY) },
    body: JSON.stringify({ id: chatId, trigger: 'submit-message', messages: [{ id: 'u1', role: 'user', parts: [{ type: 'text', text: 'hi' }] }] }),
  });

describe('sessions per key (MAX_SESSIONS_PER_KEY)', () => {
  it('refuses a turn in a new session past the limit, on every transport; existing sessions, other keys and stateless calls go on; a deletion frees a place', async () => {
    const { url } = await startServer({ API_KEYS: `${KEY},${OTHER}`, MAX_SESSIONS_PER_KEY: 3 });
    for (const session of ['s1', 's2', 's3']) expect(await turn(url, KEY, session)).toEqual({ status: 200 });

    // The fourth session, over the SSE route: 429, naming the limit and what to do.
    const refused = await turn(url, KEY, 's4');
    expect(refused.status).toBe(429);
    // No wait lifts it: no Retry-After, and the OpenAI SDKs are told not to retry (they do a 429 by default).
    expect(refused.headers?.get('retry-after')).toBeNull();
    expect(refused.headers?.get('x-should-retry')).toBe('false');
    expect(refused.error).toEqual({ code: 'rate_limited', message: expect.stringMatching(LIMIT_MESSAGE) });
    // The same answer through tRPC (WebSocket and SSE), the OpenAI route in session mode and the UI route.
    const trpc = { code: 'TOO_MANY_REQUESTS', sluiceCode: 'rate_limited', message: refused.error!.message };
    expect(await trpcRefusal(url, 'ws', 's5')).toEqual(trpc);
    expect(await trpcRefusal(url, 'sse', 's6')).toEqual(trpc);
    const openai = await completion(url, 's7');
    expect(openai.status).toBe(429);
    expect(openai.headers.get('x-should-retry')).toBe('false');
    expect(OpenAIErrorBody.parse(await openai.json()).error).toMatchObject({ code: 'rate_limited', message: refused.error!.message });
    const ui = await uiChat(url, 's8');
    expect(ui.status).toBe(429);
    expect(ErrorBody.parse(await ui.json()).error).toEqual(refused.error);

    // Nothing was dropped, nothing of the refused sessions was kept.
    for (const session of ['s1', 's2', 's3']) {
      const history = await fetch(`${url}/v1/sessions/${session}/messages`, { headers: auth(KEY) });
      expect(((await history.json()) as { messages: unknown[] }).messages).toHaveLength(2);
    }
    for (const session of ['s4', 's5', 's6', 's7', 's8']) {
      const history = await fetch(`${url}/v1/sessions/${session}/messages`, { headers: auth(KEY) });
      expect(await history.json()).toEqual({ sessionId: session, messages: [] });
    }

    // A session the key holds takes new turns, on any transport; another key has its own sessions;
    // a stateless OpenAI call makes none.
    expect(await turn(url, KEY, 's1')).toEqual({ status: 200 });
    expect((await completion(url, 's2')).status).toBe(200);
    expect((await uiChat(url, 's3')).status).toBe(200);
    expect(await turn(url, OTHER, 's4')).toEqual({ status: 200 });
    expect((await completion(url, undefined)).status).toBe(200);

    // Deleting a session frees its place.
    const deleted = await fetch(`${url}/v1/sessions/s2`, { method: 'DELETE', headers: auth(KEY) });
    expect(await deleted.json()).toEqual({ deleted: true });
    expect(await turn(url, KEY, 's4')).toEqual({ status: 200 });
    expect((await turn(url, KEY, 's5')).status).toBe(429);

    const metrics = await (await fetch(`${url}/metrics`, { headers: auth(KEY) })).text();
    expect(metrics).toMatch(/^sluice_rejected_requests_total\{reason="too_many_sessions"\} 6$/m);
  });

  it('with keys off there is no key to count by: the limit does not apply to the one (anonymous) owner', async () => {
    // A server without keys serves one user, or sits behind a gateway that signs its users in: a
    // server-wide cap would refuse every new conversation once it was reached.
    const { url } = await startServer({ MAX_SESSIONS_PER_KEY: 2 });
    for (const session of ['a1', 'a2', 'a3']) expect(await turn(url, undefined, session)).toEqual({ status: 200 });
  });

  it("in memory, one key cannot push the others' sessions out of the shared bound (MEMORY_MAX_SESSIONS)", async () => {
    // MEMORY_MAX_SESSIONS is one bound for the process; the per-key limit keeps one key's share of it.
    const { url } = await startServer({ API_KEYS: `${KEY},${OTHER}`, STORE: 'memory', MEMORY_MAX_SESSIONS: 10, MAX_SESSIONS_PER_KEY: 3 });
    expect(await turn(url, OTHER, 'theirs')).toEqual({ status: 200 });
    for (let i = 0; i < 20; i++) await turn(url, KEY, `flood-${i}`);
    const history = await fetch(`${url}/v1/sessions/theirs/messages`, { headers: auth(OTHER) });
    expect(((await history.json()) as { messages: unknown[] }).messages).toHaveLength(2);
  });

  it("without a limit, Redis keeps no set of an owner's sessions: a turn costs what it did before the limit", async () => {
    // From the review of the limit: with keys off (or MAX_SESSIONS_PER_KEY=0) every turn still ran
    // the owner's script first (a round trip more), and kept one set of every session, on one shard.
    const redis = await startRedis();
    if (!redis) return;
    for (const settings of [{}, { API_KEYS: KEY, MAX_SESSIONS_PER_KEY: 0 }]) {
      const { url } = await startServer({ REDIS_URL: redis.url, STORE: 'redis', ...settings });
      const key = 'API_KEYS' in settings ? KEY : undefined;
      for (const session of ['n1', 'n2']) expect(await turn(url, key, session)).toEqual({ status: 200 });
      const client = new Redis(redis.url);
      try {
        expect(await client.keys('*history-touched*')).not.toEqual([]);
        expect(await client.keys('*ho:*')).toEqual([]);
      } finally {
        client.disconnect();
      }
    }
  });

  it('on Redis, a session deleted through an instance without the limit frees its place on one with it', async () => {
    // From the upgrade hunt: an instance that kept no owner sets (the limit off there, or a
    // release before it, during a rolling deploy) deleted sessions and left them counted.
    const redis = await startRedis();
    if (!redis) return;
    const limited = await startServer({ REDIS_URL: redis.url, STORE: 'redis', API_KEYS: KEY, MAX_SESSIONS_PER_KEY: 3 });
    const unlimited = await startServer({ REDIS_URL: redis.url, STORE: 'redis', API_KEYS: KEY, MAX_SESSIONS_PER_KEY: 0 });
    for (const session of ['d1', 'd2', 'd3']) expect(await turn(limited.url, KEY, session)).toEqual({ status: 200 });
    for (const session of ['d2', 'd3']) {
      const deleted = await fetch(`${unlimited.url}/v1/sessions/${session}`, { method: 'DELETE', headers: auth(KEY) });
      expect(await deleted.json()).toEqual({ deleted: true });
    }
    expect(await turn(limited.url, KEY, 'd4')).toEqual({ status: 200 });
  });

  /** Settings of a store that instances share, or undefined when its server is not installed here. */
  const stores: Array<[string, () => Promise<Record<string, string> | undefined>]> = [
    ['sqlite (one instance)', async () => ({ STORE: 'sqlite', DATA_DIR: mkdtempSync(join(tmpdir(), 'sluice-sessions-')) })],
    [
      'postgres (two instances)',
      async () => {
        const pg = await startPostgres();
        return pg ? { DATABASE_URL: await pg.createDatabase() } : undefined;
      },
    ],
    [
      'redis (two instances)',
      async () => {
        const redis = await startRedis();
        return redis ? { REDIS_URL: redis.url, STORE: 'redis' } : undefined;
      },
    ],
  ];

  it.each(stores)('holds with history in %s: of new sessions started together, only as many as there are places get in', async (_name, storeSettings) => {
    const store = await storeSettings();
    if (!store) return;
    const settings = { API_KEYS: KEY, MAX_SESSIONS_PER_KEY: 3, ...store };
    const a = await startServer(settings);
    // SQLite is one process's (it locks its file): the other stores are shared, and their count too.
    const b = store.STORE === 'sqlite' ? a : await startServer(settings);
    expect(await turn(a.url, KEY, 'first')).toEqual({ status: 200 });
    // Six new sessions at once, through both instances, for the two places left.
    const statuses = await Promise.all(Array.from({ length: 6 }, (_, i) => turn(i % 2 ? b.url : a.url, KEY, `race-${i}`).then((r) => r.status)));
    expect(statuses.filter((s) => s === 200)).toHaveLength(2);
    expect(statuses.filter((s) => s === 429)).toHaveLength(4);
    expect(await turn(b.url, KEY, 'first')).toEqual({ status: 200 });
    expect((await fetch(`${b.url}/v1/sessions/first`, { method: 'DELETE', headers: auth(KEY) })).status).toBe(200);
    expect(await turn(a.url, KEY, 'after')).toEqual({ status: 200 });
    expect((await turn(b.url, KEY, 'one-more')).status).toBe(429);
  });
});
