import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';
import { DatabaseSync } from '@photostructure/sqlite';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { describe, expect, it, vi } from 'vitest';
import { simulatedDeltas } from '../server/core/providers/simulated.ts';
import { DeleteResult, ErrorBody, SessionHistory, SseErrorData } from '../shared/index.ts';
import { startFakeUpstream } from './helpers/fake-upstream.ts';
import { startPostgres } from './helpers/postgres.ts';
import { startSluiceProcess } from './helpers/process.ts';
import { startRedis } from './helpers/redis.ts';
import { startServer } from './helpers/server.ts';
import { startTcpProxy } from './helpers/tcp-proxy.ts';
import { openSseRoute, streamSseRoute, type SseFrame } from './helpers/sse.ts';
import { collectStream, stockClient } from './helpers/trpc-clients.ts';

// History lives in a database: the default embedded one survives a restart and a crash, PostgreSQL
// serves a fleet, and sessions can be paged through and deleted.

const history = async (url: string, session: string, query = '', headers: Record<string, string> = {}) =>
  SessionHistory.parse(await (await fetch(`${url}/v1/sessions/${session}/messages${query}`, { headers })).json());

async function turn(url: string, session: string, message: string, headers: Record<string, string> = {}): Promise<SseFrame[]> {
  const frames: SseFrame[] = [];
  for await (const frame of streamSseRoute(url, { message, session_id: session }, { headers })) frames.push(frame);
  return frames;
}

const dataDir = (): string => mkdtempSync(join(tmpdir(), 'sluice-durable-'));

describe('durable history', () => {
  it('the default store (no settings) keeps every conversation across a restart', async () => {
    const DATA_DIR = dataDir();
    const first = await startSluiceProcess({ DATA_DIR, SIM_DELAY_MS: 0 });
    expect(first.output()).toMatch(/"store":"memory, history in sqlite"/);
    await turn(first.url, 'kept', 'remember me');
    expect(await first.stop('SIGTERM')).toBe(0);
    // The documented offline backup: after a clean stop, history.db alone holds everything.
    expect(readdirSync(DATA_DIR).sort()).toEqual(['history.db', 'history.db.lock']);
    const backup = new DatabaseSync(join(DATA_DIR, 'history.db'), { readOnly: true });
    expect(backup.prepare('SELECT count(*) AS n FROM history_messages').get()).toMatchObject({ n: 2 });
    backup.close();

    const second = await startSluiceProcess({ DATA_DIR, SIM_DELAY_MS: 0 });
    const kept = await history(second.url, 'kept');
    expect(kept.messages.map((m) => [m.role, m.status, m.seq])).toEqual([
      ['user', 'complete', 1],
      ['assistant', 'complete', 2],
    ]);
    expect(kept.messages[1]!.content).toBe(simulatedDeltas('remember me').join(''));
    await second.stop('SIGTERM');
  });

  it("keeps a model's text as it was streamed, on the default store: a NUL in it comes as U+FFFD in both", async () => {
    const upstream = await startFakeUpstream({ kind: 'ok', tokens: ['before', ' \u0000', ' after'] });
    const server = await startServer({ STORE: 'sqlite', DATA_DIR: dataDir(), LLM_PROVIDER: 'openai', OPENAI_BASE_URL: upstream.baseURL, LLM_MODEL: 'm' });
    const frames = await turn(server.url, 'nul', 'hi');
    const streamed = frames
      .filter((f) => f.event === 'message')
      .map((f) => (JSON.parse(f.data) as { delta: string }).delta)
      .join('');
    expect(streamed).toBe('before \ufffd after');
    const kept = await history(server.url, 'nul');
    expect(kept.messages.map((m) => [m.role, m.status, m.content])).toEqual([
      ['user', 'complete', 'hi'],
      ['assistant', 'complete', streamed],
    ]);
  });

  it('SIGKILL mid-reply: after a restart the reply is there as interrupted, with its text up to about a second before', async () => {
    await crashMidReply({ DATA_DIR: dataDir() });
  });

  it('SIGKILL mid-reply with a system prompt upstream: the reply ended at restart counts the system prompt in its usage, as the reply itself would have', async () => {
    const upstream = await startFakeUpstream({ kind: 'stall', after: 3 });
    const SYSTEM = 'You are a terse assistant who answers in French.';
    const DATA_DIR = dataDir();
    const env = {
      DATA_DIR,
      LLM_PROVIDER: 'openai',
      OPENAI_BASE_URL: upstream.baseURL,
      LLM_MODEL: 'm',
      LLM_SYSTEM_PROMPT: SYSTEM,
      UPSTREAM_STALL_TIMEOUT_MS: 0,
    };
    const sluice = await startSluiceProcess(env);
    const reply = streamSseRoute(sluice.url, { message: 'hello', session_id: 'crash-system' });
    for (let i = 0; i < 3; i++) await reply.next();
    // Its draft is saved (a checkpoint), then the process dies.
    const db = new DatabaseSync(join(DATA_DIR, 'history.db'), { readOnly: true });
    await vi.waitFor(() => expect(db.prepare("SELECT count(*) AS n FROM history_messages WHERE status = 'draft'").get()).toMatchObject({ n: 1 }), {
      timeout: 10_000,
    });
    db.close();
    await sluice.stop('SIGKILL');

    const restarted = await startSluiceProcess(env);
    const ended = (await history(restarted.url, 'crash-system')).messages[1]!;
    expect(ended).toMatchObject({ role: 'assistant', status: 'interrupted' });
    const tokens = (text: string): number => countTokens(text, { disallowedSpecial: new Set() });
    expect(ended.usage).toEqual({ promptTokens: 3 + tokens(SYSTEM) + 3 + tokens('hello') + 3, completionTokens: tokens(ended.content), estimated: true });
    await restarted.stop('SIGTERM');
  });

  it('SIGKILL mid-reply on PostgreSQL without Redis (one instance): after a restart the reply is ended, with its usage', async () => {
    const pg = await startPostgres();
    if (!pg) return;
    await crashMidReply({ DATABASE_URL: await pg.createDatabase() });
  });

  async function crashMidReply(store: Record<string, string>): Promise<void> {
    const prompt = 'crash '.repeat(150).trim();
    const full = simulatedDeltas(prompt).join('');
    const sluice = await startSluiceProcess({ ...store, SIM_DELAY_MS: 20 });
    let received = '';
    const startedAt = performance.now();
    for await (const frame of streamSseRoute(sluice.url, { message: prompt, session_id: 'crash' })) {
      received += (JSON.parse(frame.data) as { delta: string }).delta;
      // Two and a half seconds of streaming: two checkpoints at least.
      if (performance.now() - startedAt > 2500) break;
    }
    await sluice.stop('SIGKILL');

    const restarted = await startSluiceProcess({ ...store, SIM_DELAY_MS: 0 });
    const [user, reply] = (await history(restarted.url, 'crash')).messages;
    expect(user).toMatchObject({ role: 'user', content: prompt, seq: 1 });
    expect(reply).toMatchObject({ role: 'assistant', status: 'interrupted', seq: 2 });
    // What was saved is the reply's beginning, no further than it got, and at most ~1 s (50 deltas at 20 ms) behind the client.
    expect(full.startsWith(reply!.content)).toBe(true);
    const behind = received.length - reply!.content.length;
    expect(reply!.content.length).toBeGreaterThan(0);
    expect(behind).toBeLessThan(simulatedDeltas(prompt).slice(0, 75).join('').length);
    // Like every interrupted reply, it keeps the usage of what it produced (estimated on restart).
    const tokens = (text: string): number => countTokens(text, { disallowedSpecial: new Set() });
    expect(reply!.usage).toEqual({ promptTokens: 3 + 3 + tokens(prompt), completionTokens: tokens(reply!.content), estimated: true });
    // The session takes a new message at once.
    const next = await turn(restarted.url, 'crash', 'again');
    expect(JSON.parse(next.at(-1)!.data)).toMatchObject({ done: true });
    expect((await history(restarted.url, 'crash')).messages.map((m) => m.seq)).toEqual([1, 2, 3, 4]);
    await restarted.stop('SIGTERM');
  }

  it("PostgreSQL without Redis: a second instance started while the first streams (a deploy's overlap) starts, and ends none of the first's running replies", async () => {
    const pg = await startPostgres();
    if (!pg) return;
    const env = { DATABASE_URL: await pg.createDatabase(), SIM_DELAY_MS: 30 };
    const first = await startSluiceProcess(env);
    const frames: SseFrame[] = [];
    const reply = streamSseRoute(first.url, { message: 'overlap '.repeat(40).trim(), session_id: 'overlap' });
    for (let i = 0; i < 3; i++) frames.push((await reply.next()).value as SseFrame);
    // Never refused: a deploy that waits for the new instance before stopping the old one would wait forever.
    const second = await startSluiceProcess(env);
    expect(second.output()).toMatch(/another Sluice without Redis uses this PostgreSQL database/);
    for await (const frame of reply) frames.push(frame);
    expect(JSON.parse(frames.at(-1)!.data)).toMatchObject({ done: true });
    const text = frames.map((f) => (JSON.parse(f.data) as { delta: string }).delta).join('');
    expect((await history(second.url, 'overlap')).messages.at(-1)).toMatchObject({ role: 'assistant', status: 'complete', content: text });
    await Promise.all([first.stop('SIGTERM'), second.stop('SIGTERM')]);
  });

  it("a turn whose start was answered 503 after its write committed (the commit's answer lost with its connection) is not stored twice when sent again", async () => {
    // The PostgreSQL hunt: told "try again shortly", the client sent the same message again and
    // history read `user, assistant interrupted "", user, assistant complete`.
    const pg = await startPostgres();
    if (!pg) return;
    const database = new URL(await pg.createDatabase());
    const proxy = await startTcpProxy(`http://${database.host}`);
    database.host = new URL(proxy.url).host;
    const sluice = await startSluiceProcess({ DATABASE_URL: database.href, SIM_DELAY_MS: 0 });
    const ask = () =>
      fetch(`${sluice.url}/v1/chat/stream`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ message: 'what is 2+2?', session_id: 'lost-commit' }),
      });
    proxy.loseAnswer('COMMIT\0');
    const first = await ask();
    expect(first.status).toBe(503);
    expect(ErrorBody.parse(await first.json()).error.code).toBe('unavailable');
    const again = await ask();
    expect(again.status).toBe(200);
    expect(await again.text()).toContain('"done": true');
    // The message once; the try that got no answer stays as what it was (a reply that never came,
    // as the OpenAI route's retries leave it), and the answer comes after it.
    expect((await history(sluice.url, 'lost-commit')).messages.map((m) => [m.role, m.status, m.content.length > 0])).toEqual([
      ['user', 'complete', true],
      ['assistant', 'interrupted', false],
      ['assistant', 'complete', true],
    ]);
    // A message sent again after a start that did not fail is a new turn.
    expect((await ask()).status).toBe(200);
    expect((await history(sluice.url, 'lost-commit')).messages.filter((m) => m.role === 'user')).toHaveLength(2);
    await sluice.stop('SIGTERM');
  });

  it('history in a Redis that keeps nothing across its restart (no RDB, no AOF) is said at start; not in one with the AOF on', async () => {
    const forgetful = await startRedis();
    const durable = await startRedis({ persistent: true });
    if (!forgetful || !durable) return;
    const warning = /history lives in a Redis that keeps nothing across its restart/;
    const a = await startSluiceProcess({ REDIS_URL: forgetful.url, SIM_DELAY_MS: 0 });
    await vi.waitFor(() => expect(a.output()).toMatch(warning));
    const b = await startSluiceProcess({ REDIS_URL: durable.url, SIM_DELAY_MS: 0 });
    // Both have answered a turn: any check made at start is over.
    for (const sluice of [a, b]) expect((await fetch(`${sluice.url}/health`)).status).toBe(200);
    await vi.waitFor(() => expect(b.output()).toMatch(/"checked the Redis history's persistence"/));
    expect(b.output()).not.toMatch(warning);
    await Promise.all([a.stop('SIGTERM'), b.stop('SIGTERM')]);
  });

  it('the persistence of a Redis that was down as the server started is looked at once it is reached', async () => {
    // The third review: the check ran only when Redis answered at start-up.
    const redis = await startRedis();
    if (!redis) return;
    await redis.stop();
    const sluice = await startSluiceProcess({ REDIS_URL: redis.url, SIM_DELAY_MS: 0 });
    expect(sluice.output()).toMatch(/the store is not reachable yet/);
    await redis.start();
    await vi.waitFor(() => expect(sluice.output()).toMatch(/history lives in a Redis that keeps nothing across its restart/), { timeout: 15_000 });
    await sluice.stop('SIGTERM');
  });

  it('two instances on PostgreSQL and Redis share history; migrations run once', async () => {
    const [pg, redis] = await Promise.all([startPostgres(), startRedis()]);
    if (!pg || !redis) return;
    const DATABASE_URL = await pg.createDatabase();
    const env = { DATABASE_URL, REDIS_URL: redis.url, SIM_DELAY_MS: 0 };
    const [a, b] = await Promise.all([startSluiceProcess(env), startSluiceProcess(env)]);
    expect(a.output()).toMatch(/"store":"redis, history in postgres"/);
    await turn(a.url, 'fleet', 'on A');
    await turn(b.url, 'fleet', 'on B');
    expect((await history(a.url, 'fleet')).messages.map((m) => [m.role, m.seq])).toEqual([
      ['user', 1],
      ['assistant', 2],
      ['user', 3],
      ['assistant', 4],
    ]);
    const sql = postgres(DATABASE_URL, { max: 1, onnotice: () => undefined });
    try {
      const rows = await sql<{ version: number; n: number }[]>`SELECT version, count(*)::int AS n FROM history_migrations GROUP BY version`;
      expect(rows.length).toBeGreaterThan(0);
      for (const row of rows) expect(row.n).toBe(1);
    } finally {
      await sql.end();
    }
    await Promise.all([a.stop('SIGTERM'), b.stop('SIGTERM')]);
  });

  it('a reply PostgreSQL could not take as it ended says it will be stored, not that it could not be, and is once PostgreSQL is back', async () => {
    const pg = await startPostgres();
    if (!pg) return;
    const server = await startServer({ DATABASE_URL: await pg.createDatabase(), SIM_DELAY_MS: 20 });
    const frames: SseFrame[] = [];
    const reply = streamSseRoute(server.url, { message: 'long '.repeat(60).trim(), session_id: 'later' });
    for (let i = 0; i < 5; i++) frames.push((await reply.next()).value as SseFrame);
    await pg.halt();
    try {
      for await (const frame of reply) frames.push(frame);
    } finally {
      await pg.resume();
    }
    const ending = SseErrorData.parse(JSON.parse(frames.at(-1)!.data));
    // A client told that its reply was lost would send its message again: a second turn.
    expect(ending.message).toMatch(/will be stored once the history store is back/);
    await vi.waitFor(async () => expect((await history(server.url, 'later')).messages.at(-1)).toMatchObject({ role: 'assistant', content: ending.partial }), {
      timeout: 15_000,
      interval: 200,
    });
  });

  it('pages through a long session by limit and before, over HTTP and tRPC; a bad page is a 422 naming it', async () => {
    const { url } = await startServer();
    for (let i = 1; i <= 3; i++) await turn(url, 'long', `turn ${i}`);
    expect((await history(url, 'long')).messages.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect((await history(url, 'long', '?limit=2')).messages.map((m) => m.seq)).toEqual([5, 6]);
    expect((await history(url, 'long', '?limit=2&before=5')).messages.map((m) => m.seq)).toEqual([3, 4]);
    expect((await history(url, 'long', '?before=2')).messages.map((m) => m.content)).toEqual(['turn 1']);
    const bad = await fetch(`${url}/v1/sessions/long/messages?limit=0`);
    expect(bad.status).toBe(422);
    expect(ErrorBody.parse(await bad.json()).error).toMatchObject({ code: 'invalid_request', message: expect.stringMatching(/^limit: /) });

    for (const kind of ['ws', 'sse'] as const) {
      const { client } = stockClient(url, kind);
      const page = await client.chat.history.query({ sessionId: 'long', limit: 3, before: 6 });
      expect(page.messages.map((m) => m.seq)).toEqual([3, 4, 5]);
    }
  });

  it('a page holds `limit` messages while a reply runs (its draft is not history yet, and takes no place)', async () => {
    const { url } = await startServer({ SIM_DELAY_MS: 20 });
    for (let i = 1; i <= 3; i++) await turn(url, 'busy-pages', `turn ${i}`);
    let started!: () => void;
    const firstDelta = new Promise<void>((resolve) => (started = resolve));
    const running = openSseRoute(url, { message: 'turn 4', session_id: 'busy-pages' }, {}, () => started());
    await firstDelta;
    expect((await history(url, 'busy-pages', '?limit=1')).messages.map((m) => m.seq)).toEqual([7]);
    expect((await history(url, 'busy-pages', '?limit=3')).messages.map((m) => m.seq)).toEqual([5, 6, 7]);
    expect((await history(url, 'busy-pages', '?limit=2&before=8')).messages.map((m) => m.seq)).toEqual([6, 7]);
    expect((await history(url, 'busy-pages')).messages.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(await running.done).toBe(200);
  });

  it("deletion is per owner, and cancels the session's running reply first", async () => {
    const A = 'delete-alpha-0123456789abcdef';
    const B = 'delete-bravo-0123456789abcdef';
    const { url } = await startServer({ API_KEYS: `${A},${B}`, SIM_DELAY_MS: 20 });
    const as = (key: string) => ({ authorization: `Bearer ${key}` });
    await turn(url, 'mine', 'of A', as(A));
    await turn(url, 'mine', 'of B', as(B));

    const running = streamSseRoute(url, { message: 'a long one', session_id: 'mine' }, { headers: as(A) });
    await running.next();
    // B deleting its own "mine" leaves A's session, and A's running reply, alone.
    const byB = await fetch(`${url}/v1/sessions/mine`, { method: 'DELETE', headers: as(B) });
    expect(DeleteResult.parse(await byB.json())).toEqual({ deleted: true });
    expect((await history(url, 'mine', '', as(B))).messages).toEqual([]);
    expect((await history(url, 'mine', '', as(A))).messages.map((m) => m.content)).toContain('of A');

    // A deletes its session while the reply runs: the reply is cancelled, then nothing is left.
    const byA = await fetch(`${url}/v1/sessions/mine`, { method: 'DELETE', headers: as(A) });
    expect(DeleteResult.parse(await byA.json())).toEqual({ deleted: true });
    let last: SseFrame | undefined;
    for await (const frame of running) last = frame;
    expect(last?.event).toBe('error');
    expect((await history(url, 'mine', '', as(A))).messages).toEqual([]);
    expect(DeleteResult.parse(await (await fetch(`${url}/v1/sessions/mine`, { method: 'DELETE', headers: as(A) })).json())).toEqual({ deleted: false });

    // The same over tRPC.
    const { client } = stockClient(url, 'ws', { apiKey: A });
    await collectStream(client, { message: 'again', sessionId: 'trpc-mine' });
    expect(await client.chat.deleteSession.mutate({ sessionId: 'trpc-mine' })).toEqual({ deleted: true });
    expect((await client.chat.history.query({ sessionId: 'trpc-mine' })).messages).toEqual([]);
  });
});
