import { Redis } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { simulatedDeltas } from '../server/core/providers/simulated.ts';
import { ErrorBody, SseErrorData, SseMessageData } from '../shared/index.ts';
import { DEFAULT_TOKENS, startFakeUpstream } from './helpers/fake-upstream.ts';
import { captureLogs } from './helpers/logs.ts';
import { startSluiceProcess } from './helpers/process.ts';
import { startRedis, type RedisServer } from './helpers/redis.ts';
import { startServer, type TestServer } from './helpers/server.ts';
import { startTcpProxy } from './helpers/tcp-proxy.ts';
import { pino } from 'pino';
import { loadConfig } from '../server/config.ts';
import { sessionKeyOf } from '../server/core/store/history.ts';
import { Leases } from '../server/core/leases.ts';
import { storeFrom } from '../server/wiring/store.ts';
import { cancel, drain, history, parseSse, rawRequest, type SseFrame, streamSseRoute } from './helpers/sse.ts';
import { stockClient } from './helpers/trpc-clients.ts';

// Two instances on one real Redis, and the faults a production Redis has: connections killed,
// keys lost in a failover, a subscriber that reconnects. Whatever happens, a cancel that says
// `true` stops its reply, a session has one reply per turn, and listeners see only stored events.

const LONG = 'long '.repeat(120).trim();
const admins: Redis[] = [];
afterEach(() => {
  for (const admin of admins.splice(0)) admin.disconnect();
});

async function admin(redis: RedisServer): Promise<Redis> {
  const client = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  client.on('error', () => undefined);
  admins.push(client);
  return client;
}

/** The names of the Redis connections of one Sluice instance: those opened since `before`. */
async function clientNames(redis: Redis): Promise<Map<string, string>> {
  const list = (await redis.call('CLIENT', 'LIST')) as string;
  const byId = new Map<string, string>();
  for (const line of list.split('\n')) {
    const id = /\bid=(\d+)/.exec(line)?.[1];
    const name = /\bname=(\S*)/.exec(line)?.[1];
    if (id && name) byId.set(id, name);
  }
  return byId;
}

/** Kills the connections of the instance whose names start with `prefix` and end with one of `roles`. */
async function kill(redis: Redis, instance: string, roles: readonly string[]): Promise<number> {
  let killed = 0;
  for (const [id, name] of await clientNames(redis)) {
    if (name.startsWith(`sluice-${instance}-`) && roles.some((r) => name.endsWith(`-${r}`))) {
      killed += (await redis.call('CLIENT', 'KILL', 'ID', id)) as number;
    }
  }
  return killed;
}

/** Starts A, learns its connection names' instance id, then starts B. */
async function pair(
  settings: Record<string, string | number>,
): Promise<{ redis: RedisServer; a: TestServer; b: TestServer; aId: string; admin: Redis } | undefined> {
  const redis = await startRedis();
  if (!redis) return undefined;
  const adminClient = await admin(redis);
  const env = { REDIS_URL: redis.url, ...settings };
  const a = await startServer(env);
  await vi.waitFor(async () => expect([...(await clientNames(adminClient)).values()].some((n) => n.endsWith('-sub'))).toBe(true));
  const aId = /^sluice-([0-9a-f]+)-/.exec([...(await clientNames(adminClient)).values()].find((n) => n.startsWith('sluice-'))!)![1]!;
  const b = await startServer(env);
  return { redis, a, b, aId, admin: adminClient };
}

/** A reply started on `url`, its first frame read: the stream, that frame and its generation's id. */
async function replyStarted(url: string, session: string): Promise<{ head: AsyncGenerator<SseFrame>; first: SseFrame; generation: string }> {
  const head = streamSseRoute(url, { message: LONG, session_id: session });
  const first = (await head.next()).value as SseFrame;
  return { head, first, generation: first.id!.split(':')[0]! };
}

/** Deletes a reply's liveness mark, as a failover that outlasted it does. */
async function dropMark(client: Redis, generation: string): Promise<void> {
  await client.del(...(await client.keys(`*alive:${generation}*`)));
}

const lastIsCancelled = (frames: SseFrame[]): boolean =>
  frames.at(-1)?.event === 'error' && SseErrorData.parse(JSON.parse(frames.at(-1)!.data)).message === 'The reply was cancelled';

describe('faults of a shared Redis', () => {
  it('7: a cancel sent to B while the reply starts on A, answering true, always ends the reply as cancelled', async () => {
    const setup = await pair({ SIM_DELAY_MS: 10, RESUME_GRACE_MS: 60_000 });
    if (!setup) return;
    const { a, b } = setup;
    let raced = 0;
    for (let i = 0; i < 30; i++) {
      const session = `race-${i}`;
      const stream = drain(streamSseRoute(a.url, { message: 'race me', session_id: session }));
      // Cancels sent from the first moment on, until one lands or the reply is over.
      let said = false;
      const done = stream.then(() => true);
      while (!said && !(await Promise.race([done, Promise.resolve(false)]))) said = await cancel(b.url, session);
      const frames = await stream;
      if (!said) continue;
      raced++;
      expect(lastIsCancelled(frames), `attempt ${i}: ${frames.at(-1)?.data}`).toBe(true);
      expect((await history(a.url, session)).messages.at(-1)?.status).toBe('interrupted');
    }
    expect(raced).toBeGreaterThan(10);
  });

  it("7: a cancel that answers true while the reply's instance cannot reach Redis never leaves the reply stored complete", async () => {
    const redis = await startRedis();
    if (!redis) return;
    let finish!: () => void;
    const upstream = await startFakeUpstream({ kind: 'finish-when', finish: new Promise<void>((resolve) => (finish = resolve)) });
    // A reaches Redis through a link that can be cut; B directly.
    const link = await startTcpProxy(redis.url.replace('redis:', 'http:'));
    const env = { LLM_PROVIDER: 'openai', OPENAI_BASE_URL: upstream.baseURL, LLM_MODEL: 'm', RESUME_GRACE_MS: 60_000, REDIS_OUTAGE_WAIT_MS: 300 };
    const a = await startServer({ ...env, REDIS_URL: link.url.replace('http:', 'redis:') });
    const b = await startServer({ ...env, REDIS_URL: redis.url });
    const head = streamSseRoute(a.url, { message: 'hello', session_id: 'cut-off' });
    for (let i = 0; i < DEFAULT_TOKENS.length; i++) expect((await head.next()).value).toMatchObject({ event: 'message' });
    link.refuse();
    expect(await cancel(b.url, 'cut-off')).toBe(true);
    // The model finishes while A cannot tell whether a cancel came first.
    finish();
    const rest = await drain(head);
    expect(rest.at(-1)?.event).toBe('error');
    link.release();
    // Once A reaches Redis again, the reply it stores is not one that completed.
    await vi.waitFor(async () => expect((await history(b.url, 'cut-off')).messages.at(-1)?.role).toBe('assistant'), { timeout: 15_000 });
    expect((await history(b.url, 'cut-off')).messages.at(-1)?.status).not.toBe('complete');
  });

  it("7: a cancelled reply's mark in Redis outlives its reply only as long as a settled reply's, not the day a cancel may wait", async () => {
    const setup = await pair({ SIM_DELAY_MS: 20 });
    if (!setup) return;
    const { a, b, admin: client } = setup;
    const head = streamSseRoute(a.url, { message: LONG, session_id: 'marked' });
    const first = (await head.next()).value as SseFrame;
    expect(await cancel(b.url, 'marked')).toBe(true);
    expect(lastIsCancelled(await drain(head))).toBe(true);
    const mark = (await client.keys(`*cx*${first.id!.split(':')[0]!}*`))[0]!;
    await vi.waitFor(async () => {
      const ttl = await client.pttl(mark);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(5 * 60 * 1000);
    });
  });

  it("7: a cancelled reply without a session (the OpenAI route's) leaves its mark in Redis no longer than a settled reply's", async () => {
    const setup = await pair({ SIM_DELAY_MS: 20 });
    if (!setup) return;
    const { a, admin: client } = setup;
    const model = ((await (await fetch(`${a.url}/v1/models`)).json()) as { data: Array<{ id: string }> }).data[0]!.id;
    const res = await fetch(`${a.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model, stream: true, messages: [{ role: 'user', content: LONG }] }),
    });
    const reader = res.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    const generation = /"id":\s*"chatcmpl-([^"]+)"/.exec(first)![1]!;
    expect(await cancel(a.url, `stateless:${generation}`)).toBe(true);
    while (!(await reader.read()).done);
    const mark = (await client.keys(`*cx*${generation}*`))[0]!;
    await vi.waitFor(async () => {
      const ttl = await client.pttl(mark);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(5 * 60 * 1000);
    });
  });

  it("8: a cancel for a session whose reply's instance was killed answers at once, once the reply's mark has expired", async () => {
    const redis = await startRedis();
    if (!redis) return;
    const env = { REDIS_URL: redis.url, SIM_DELAY_MS: 20, LIVENESS_TTL_MS: 4000 };
    const a = await startSluiceProcess(env);
    const b = await startServer(env);
    const head = streamSseRoute(a.url, { message: LONG, session_id: 'killed' });
    const first = (await head.next()).value as SseFrame;
    void drain(head).catch(() => undefined);
    await a.stop('SIGKILL');
    const client = await admin(redis);
    const generation = first.id!.split(':')[0]!;
    await vi.waitFor(async () => expect(await client.keys(`*alive:${generation}*`)).toEqual([]), { timeout: 15_000 });
    // Said without waiting (whether its instance is gone is known half a TTL after its mark is
    // first found missing: until then the reply counts as running, and a cancel asks it to stop).
    const startedAt = performance.now();
    const answered = await cancel(b.url, 'killed');
    expect(performance.now() - startedAt).toBeLessThan(1000);
    // What the cancel said holds: a resume finds the reply ended as cancelled if it said true.
    const resumed = await drain(streamSseRoute(b.url, { message: LONG, session_id: 'killed' }, { headers: { 'last-event-id': first.id! } }));
    expect(lastIsCancelled(resumed)).toBe(answered);
    // The session's next message, sent again while busy, ends it (its partial stored) and runs.
    await vi.waitFor(async () => expect((await drain(streamSseRoute(b.url, { message: 'again', session_id: 'killed' }))).at(-1)?.event).toBe('message'), {
      timeout: 15_000,
      interval: 500,
    });
    expect((await history(b.url, 'killed')).messages.map((m) => [m.role, m.status])).toEqual([
      ['user', 'complete'],
      ['assistant', 'interrupted'],
      ['user', 'complete'],
      ['assistant', 'complete'],
    ]);
    // Ended, it leaves nothing of the wait that found it dead, and one mark: the cancel's, for a
    // settled reply's time at most; or that its ending came first, for as long as its owner could
    // still wake and settle it (a day; see the test of an owner stalled while its model held the
    // reply's end).
    expect(await client.keys(`*suspect*${generation}*`)).toEqual([]);
    const marks = await client.keys(`*cx*${generation}*`);
    expect(marks).toHaveLength(1);
    expect(await client.get(marks[0]!)).toBe(answered ? 'c' : 'o');
    expect(await client.pttl(marks[0]!)).toBeLessThanOrEqual(answered ? 5 * 60 * 1000 : 24 * 60 * 60 * 1000);
  });

  it("7: a cancel published while A's subscriber connection reconnects still stops the reply", async () => {
    const setup = await pair({ SIM_DELAY_MS: 20, RESUME_GRACE_MS: 60_000 });
    if (!setup) return;
    const { a, b, aId, admin: redis } = setup;
    const frames: SseFrame[] = [];
    const stream = streamSseRoute(a.url, { message: LONG, session_id: 'resub' });
    frames.push((await stream.next()).value as SseFrame);
    expect(await kill(redis, aId, ['sub'])).toBe(1);
    expect(await cancel(b.url, 'resub')).toBe(true);
    frames.push(...(await drain(stream)));
    expect(lastIsCancelled(frames)).toBe(true);
    expect(frames.length).toBeLessThan(simulatedDeltas(LONG).length);
  });

  it('8: when the session lock vanishes (a failover lost it), a second message never runs beside the first reply', async () => {
    const setup = await pair({ SIM_DELAY_MS: 20, RESUME_GRACE_MS: 60_000, LIVENESS_TTL_MS: 600 });
    if (!setup) return;
    const { a, b, admin: redis } = setup;
    const first = streamSseRoute(a.url, { message: LONG, session_id: 'lost' });
    await first.next();
    const locks = await redis.keys('sluice:lease:session:*');
    expect(locks).toHaveLength(1);
    await redis.del(...locks);
    // B may start the second turn (the lock was free): then A's reply must stop. Or A took its
    // lock back first: then B is refused. Never both replies to the end, side by side.
    const second = await drain(streamSseRoute(b.url, { message: 'second', session_id: 'lost' })).catch(() => undefined);
    const firstFrames = await drain(first);
    const firstCompleted = firstFrames.at(-1)?.event === 'message';
    expect(second === undefined || !firstCompleted).toBe(true);
    await vi.waitFor(async () => {
      const roles = (await history(b.url, 'lost')).messages.map((m) => m.role);
      expect(roles).toEqual(roles.map((_, i) => (i % 2 === 0 ? 'user' : 'assistant')));
      expect(roles.length % 2).toBe(0);
    });
  });

  it('8: a reply that ended but could not free its session (Redis was away as it let go) leaves the session usable once it is not marked alive', async () => {
    const redis = await startRedis();
    if (!redis) return;
    const server = await startServer({ REDIS_URL: redis.url, LIVENESS_TTL_MS: 600 });
    const { store } = server.sluice;
    // What such a reply leaves behind: its log ended, its lock still held (the release never
    // reached Redis, and the lock lasts a day), its liveness mark gone (no longer refreshed).
    const record = { id: '0123456789abcdef0123456789abcdef', owner: 'anonymous', sessionId: 'stuck', sessionKey: 'anonymous/stuck', stored: true };
    await store.events.open(record, 60_000);
    expect(await store.events.append(record.id, 1, { type: 'done', totalChunks: 0 })).toBe('added');
    expect(await store.leases.acquire('session:anonymous/stuck', record.id, 86_400_000)).toBe(true);
    const res = await rawRequest(`${server.url}/v1/chat/stream`, {
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ message: 'again', session_id: 'stuck' }),
    });
    expect(res.status).toBe(200);
    expect(parseSse(res.body.toString()).at(-1)?.event).toBe('message');
  });

  it("8: a reply whose instance died as it started (its log opened, its session locked, its message not stored yet) leaves nothing in history: the next message is the session's first", async () => {
    const redis = await startRedis();
    if (!redis) return;
    const env = { REDIS_URL: redis.url, LIVENESS_TTL_MS: '400' };
    // The start's first steps, by Sluice's own store, then nothing more: the process is gone.
    const logger = pino({ level: 'silent' });
    const store = await storeFrom(loadConfig(env), logger);
    expect(await store.ready(5000)).toBe(true);
    const record = { id: 'died-starting', owner: 'anonymous', sessionId: 'ghost', sessionKey: sessionKeyOf('anonymous', 'ghost'), stored: true };
    await store.events.open(record, 60_000);
    const leases = new Leases({ store: store.leases, ttlMs: 400, logger });
    expect(await leases.lockSession(record.sessionKey, record.id, 60_000)).toBeDefined();
    leases.close();
    await store.close();

    const server = await startServer(env);
    // Busy until its mark has been seen missing for half its TTL, as a running reply is; then free.
    await vi.waitFor(async () => expect((await drain(streamSseRoute(server.url, { message: 'hello', session_id: 'ghost' }))).at(-1)?.event).toBe('message'), {
      timeout: 10_000,
      interval: 100,
    });
    expect((await history(server.url, 'ghost')).messages.map((m) => [m.seq, m.role])).toEqual([
      [1, 'user'],
      [2, 'assistant'],
    ]);
  });

  it('8: a running reply whose liveness mark is gone (a failover that outlasted it) is not ended by a new message elsewhere: the session is busy until its instance takes the mark back', async () => {
    const setup = await pair({ SIM_DELAY_MS: 20, LIVENESS_TTL_MS: 3000 });
    if (!setup) return;
    const { a, b, admin: client } = setup;
    const { head, generation } = await replyStarted(a.url, 'mark-gone');
    await dropMark(client, generation);
    const next = await rawRequest(`${b.url}/v1/chat/stream`, {
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ message: 'next question', session_id: 'mark-gone' }),
    });
    expect(next.status).toBe(409);
    expect((await drain(head)).at(-1)?.event).toBe('message');
    expect((await history(b.url, 'mark-gone')).messages.map((m) => m.status)).toEqual(['complete', 'complete']);
  });

  it('8: a running reply whose liveness mark is lost twice, each time taken back by its instance, is not ended by a new message elsewhere the second time either', async () => {
    const setup = await pair({ SIM_DELAY_MS: 20, LIVENESS_TTL_MS: 3000 });
    if (!setup) return;
    const { a, b, admin: client } = setup;
    const { head, generation } = await replyStarted(a.url, 'lost-twice');
    const send = () =>
      rawRequest(`${b.url}/v1/chat/stream`, {
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ message: 'next', session_id: 'lost-twice' }),
      });
    for (let loss = 0; loss < 2; loss++) {
      await dropMark(client, generation);
      expect((await send()).status).toBe(409);
      // Its instance takes the mark back at its next heartbeat.
      await vi.waitFor(async () => expect(await client.keys(`*alive:${generation}*`)).toHaveLength(1), { timeout: 5_000, interval: 50 });
      // Longer than half the TTL since the first loss was found.
      await vi.waitFor(async () => expect(await client.keys('*suspect-window*')).toEqual([]), { timeout: 5_000, interval: 50 });
    }
    expect((await drain(head)).at(-1)?.event).toBe('message');
  });

  it("8: an instance stalled longer than LIVENESS_TTL_MS (its reply ended as orphan elsewhere) adds nothing to the log or history when it wakes, and its own client's stream ends with an explicit error", async () => {
    const redis = await startRedis();
    if (!redis) return;
    const env = { REDIS_URL: redis.url, SIM_DELAY_MS: 20, RESUME_GRACE_MS: 60_000, LIVENESS_TTL_MS: 400 };
    const [a, b] = await Promise.all([startSluiceProcess(env), startSluiceProcess(env)]);
    const head = streamSseRoute(a.url, { message: LONG, session_id: 'stall' });
    const first = (await head.next()).value as SseFrame;
    // A stops (a long GC pause, a frozen VM); B's follower finds it dead and ends the reply.
    a.child.kill('SIGSTOP');
    const follower = await drain(streamSseRoute(b.url, { message: LONG, session_id: 'stall' }, { headers: { 'last-event-id': first.id! } }));
    expect(follower.at(-1)?.event).toBe('error');
    a.child.kill('SIGCONT');
    // A's client was shown the events A stored before it stalled; once A finds its reply ended
    // elsewhere, its stream must still end with an error event, never just stop after a delta.
    const rest = await drain(head);
    expect(rest.at(-1)?.event).toBe('error');
    const ending = SseErrorData.parse(JSON.parse(rest.at(-1)!.data));
    const shown = [first, ...rest.slice(0, -1)].map((f) => SseMessageData.parse(JSON.parse(f.data)).delta).join('');
    expect(ending.partial).toBe(shown);
    const client = await admin(redis);
    const generation = first.id!.split(':')[0]!;
    await vi.waitFor(async () => {
      const log = (await client.xrange(`sluice:ev:{${generation}}`, '-', '+')).map(([, fields]) => JSON.parse(fields[1]!) as { type: string });
      // One ending, and nothing after it.
      expect(log.filter((e) => e.type !== 'delta')).toHaveLength(1);
      expect(log.at(-1)!.type).not.toBe('delta');
      const roles = (await history(b.url, 'stall')).messages.map((m) => m.role);
      expect(roles).toEqual(['user', 'assistant']);
    });
    await Promise.all([a.stop(), b.stop()]);
  });

  it("8: an instance stalled while its model held the reply's end (every delta stored) learns when it wakes that the reply was ended elsewhere: its client is told so, and history keeps that ending", async () => {
    // The review of the ninth session: a `complete` final message now replaces an `interrupted`
    // one (for PostgreSQL without Redis), and the owner of a reply ended as an orphan settled it
    // again as its own, so its late `complete` replaced the ending everyone else had been shown.
    const redis = await startRedis();
    if (!redis) return;
    let finish!: () => void;
    const upstream = await startFakeUpstream({ kind: 'finish-when', finish: new Promise<void>((resolve) => (finish = resolve)) });
    const env = {
      REDIS_URL: redis.url,
      LLM_PROVIDER: 'openai',
      OPENAI_BASE_URL: upstream.baseURL,
      LLM_MODEL: 'm',
      RESUME_GRACE_MS: 60_000,
      LIVENESS_TTL_MS: 400,
      // A short log lifetime: the ending's mark must outlast it, as long as the owner may still wake.
      EVENT_LOG_TTL_MS: 1000,
    };
    const [a, b] = await Promise.all([startSluiceProcess(env), startSluiceProcess(env)]);
    const head = streamSseRoute(a.url, { message: 'hello', session_id: 'held-end' });
    const shown: SseFrame[] = [];
    for (let i = 0; i < DEFAULT_TOKENS.length; i++) shown.push((await head.next()).value as SseFrame);
    a.child.kill('SIGSTOP');
    const follower = await drain(streamSseRoute(b.url, { message: 'hello', session_id: 'held-end' }, { headers: { 'last-event-id': shown.at(-1)!.id! } }));
    expect(SseErrorData.parse(JSON.parse(follower.at(-1)!.data))).toMatchObject({ message: expect.stringMatching(/interrupted/i) });
    // The review of that fix: a mark that lived as long as a settled one (a minute here, five by
    // default) let an owner that woke later settle the reply as its own all the same.
    const client = await admin(redis);
    const mark = (await client.keys('*cx*')).find((key) => key.includes(shown[0]!.id!.split(':')[0]!));
    expect(await client.get(mark!)).toBe('o');
    expect(await client.pttl(mark!)).toBeGreaterThan(60 * 60 * 1000);
    // The model finishes; A wakes.
    finish();
    a.child.kill('SIGCONT');
    const rest = await drain(head);
    expect(rest.at(-1)?.event).toBe('error');
    await vi.waitFor(() => expect(a.output()).toMatch(/"generation (finished|failed)"/), { timeout: 10_000 });
    expect((await history(b.url, 'held-end')).messages.map((m) => [m.role, m.status])).toEqual([
      ['user', 'complete'],
      ['assistant', 'interrupted'],
    ]);
    await Promise.all([a.stop(), b.stop()]);
  });

  it('9: a reply that ends while Redis is away keeps its partial: its final message is written once Redis is back', async () => {
    const redis = await startRedis({ persistent: true });
    if (!redis) return;
    const server = await startServer({ REDIS_URL: redis.url, SIM_DELAY_MS: 20, REDIS_OUTAGE_WAIT_MS: 300 });
    const frames: SseFrame[] = [];
    const reply = streamSseRoute(server.url, { message: LONG, session_id: 'away' });
    for (let i = 0; i < 5; i++) frames.push((await reply.next()).value as SseFrame);
    await redis.stop();
    for await (const frame of reply) frames.push(frame);
    const ending = SseErrorData.parse(JSON.parse(frames.at(-1)!.data));
    expect(ending.partial.length).toBeGreaterThan(0);
    await redis.start();
    await vi.waitFor(async () => expect((await history(server.url, 'away')).messages.at(-1)).toMatchObject({ role: 'assistant', content: ending.partial }), {
      timeout: 10_000,
    });
  });

  it('9: a Redis that stops answering (CLIENT PAUSE) is a quick 503 and an unready instance, not requests that hang for the pause', async () => {
    const redis = await startRedis();
    if (!redis) return;
    const server = await startServer({ REDIS_URL: redis.url });
    const client = await admin(redis);
    await client.call('CLIENT', 'PAUSE', '6000', 'ALL');
    try {
      const within = AbortSignal.timeout(4000);
      const ready = await fetch(`${server.url}/ready`, { signal: within });
      expect(ready.status).toBe(503);
      const start = await fetch(`${server.url}/v1/chat/stream`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"message":"hi","session_id":"paused"}',
        signal: within,
      });
      expect(start.status).toBe(503);
      expect(ErrorBody.parse(await start.json()).error.code).toBe('unavailable');
    } finally {
      await client.call('CLIENT', 'UNPAUSE');
    }
    await vi.waitFor(async () => expect((await fetch(`${server.url}/ready`)).status).toBe(200), { timeout: 10_000 });
  });

  it('9: a reply that runs on through a Redis restart that lost everything (no persistence) can still be resumed through another instance', async () => {
    const setup = await pair({ SIM_DELAY_MS: 20, RESUME_GRACE_MS: 60_000, REDIS_OUTAGE_WAIT_MS: 5000 });
    if (!setup) return;
    const { redis, a, b } = setup;
    const head = streamSseRoute(a.url, { message: LONG, session_id: 'emptied' });
    const frames: SseFrame[] = [];
    for (let i = 0; i < 3; i++) frames.push((await head.next()).value as SseFrame);
    await redis.restart();
    // A stores its events again (it refills the log Redis lost); a few more go out after the restart.
    for (let i = 0; i < 5; i++) frames.push((await head.next()).value as SseFrame);
    const resumed = streamSseRoute(b.url, { message: LONG, session_id: 'emptied' }, { headers: { 'last-event-id': frames.at(-1)!.id! } });
    const [fromB, fromA] = await Promise.all([drain(resumed), drain(head)]);
    const seen = (list: SseFrame[]) => list.map((f) => `${f.event}|${f.id}|${f.data}`);
    expect(fromA.at(-1)?.event).toBe('message');
    expect(seen(fromB)).toEqual(seen(fromA));
  });

  it('9: a Redis that refuses writes (maxmemory reached, noeviction) makes the instance unready until it takes them again', async () => {
    const redis = await startRedis();
    if (!redis) return;
    const server = await startServer({ REDIS_URL: redis.url });
    const client = await admin(redis);
    expect((await fetch(`${server.url}/ready`)).status).toBe(200);
    await client.config('SET', 'maxmemory-policy', 'noeviction');
    await client.config('SET', 'maxmemory', '1');
    const start = await fetch(`${server.url}/v1/chat/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"message":"hi","session_id":"full"}',
    });
    expect(start.status).toBe(503);
    const ready = await fetch(`${server.url}/ready`);
    expect(ready.status).toBe(503);
    await client.config('SET', 'maxmemory', '0');
    await vi.waitFor(async () => expect((await fetch(`${server.url}/ready`)).status).toBe(200), { timeout: 10_000 });
    const again = await drain(streamSseRoute(server.url, { message: 'hi', session_id: 'full' }));
    expect(SseMessageData.parse(JSON.parse(again.at(-1)!.data)).done).toBe(true);
  });

  it('9: events whose write to Redis failed are never shown; a full resume on B matches what A sent, or both end with an error', async () => {
    const setup = await pair({ SIM_DELAY_MS: 15, RESUME_GRACE_MS: 60_000 });
    if (!setup) return;
    const { a, b, aId, admin: redis } = setup;
    const prompt = 'kill '.repeat(60).trim();
    const frames: SseFrame[] = [];
    let kills = 0;
    for await (const frame of streamSseRoute(a.url, { message: prompt, session_id: 'holes' })) {
      frames.push(frame);
      if (frames.length % 10 === 5 && kills < 4) kills += await kill(redis, aId, ['main']);
    }
    expect(kills).toBeGreaterThan(0);
    const id = frames[0]!.id!.replace(/:\d+$/, ':0');
    const resumed = await drain(streamSseRoute(b.url, { message: prompt, session_id: 'holes' }, { headers: { 'last-event-id': id } }));
    const seen = (list: SseFrame[]) => list.map((f) => `${f.event}|${f.id}|${f.data}`);
    expect(seen(resumed)).toEqual(seen(frames));
    const last = frames.at(-1)!;
    if (last.event === 'message') {
      const done = SseMessageData.parse(JSON.parse(last.data));
      expect(done).toMatchObject({ done: true, total_chunks: frames.length - 1 });
    } else expect(last.event).toBe('error');
  });

  it('11: listeners on B following one reply on A share one Redis reader: no connection churn', async () => {
    const setup = await pair({ SIM_DELAY_MS: 20, RESUME_GRACE_MS: 60_000 });
    if (!setup) return;
    const { a, b, admin: redis } = setup;
    const head = streamSseRoute(a.url, { message: LONG, session_id: 'many' });
    const first = (await head.next()).value as SseFrame;
    const connectionsReceived = async (): Promise<number> => Number(/total_connections_received:(\d+)/.exec(await redis.info('stats'))![1]);
    const before = await connectionsReceived();
    const followers = Array.from({ length: 60 }, () =>
      drain(streamSseRoute(b.url, { message: LONG, session_id: 'many' }, { headers: { 'last-event-id': first.id! } })),
    );
    const all = await Promise.all(followers);
    for (const frames of all) expect(JSON.parse(frames.at(-1)!.data)).toMatchObject({ done: true });
    await drain(head);
    expect((await connectionsReceived()) - before).toBeLessThanOrEqual(4);
  });

  it('9: a Redis restart that lost everything while a reply is quiet ends it nowhere else: its owner takes its marks back, and the reply ends as its owner ends it', async () => {
    const redis = await startRedis();
    if (!redis) return;
    // Five tokens, then the model thinks (no token) until the reply is stopped.
    const upstream = await startFakeUpstream({ kind: 'stall', after: 5 });
    const { logger, lines } = captureLogs('warn');
    // A heartbeat every 10 s: the follower on B looks at the owner's liveness before A's next beat.
    const env = {
      REDIS_URL: redis.url,
      LLM_PROVIDER: 'openai',
      OPENAI_BASE_URL: upstream.baseURL,
      LLM_MODEL: 'm',
      UPSTREAM_STALL_TIMEOUT_MS: 0,
      RESUME_GRACE_MS: 60_000,
      LIVENESS_TTL_MS: 30_000,
    };
    const a = await startServer(env, { logger });
    const b = await startServer(env);
    const head = streamSseRoute(a.url, { message: 'think', session_id: 'quiet' });
    const shown: SseFrame[] = [];
    for (let i = 0; i < DEFAULT_TOKENS.length; i++) shown.push((await head.next()).value as SseFrame);
    const follower = drain(streamSseRoute(b.url, { message: 'think', session_id: 'quiet' }, { headers: { 'last-event-id': shown.at(-1)!.id! } }));
    // Following before Redis goes: a resume that reaches B during the restart is a 503 (the store
    // is away), which a loaded machine once made of this test's own request.
    await vi.waitFor(() => expect(b.sluice.service.openListeners).toBe(1));
    await redis.restart();
    // A's heartbeat finds its marks gone and takes them back: A never stopped.
    await vi.waitFor(() => expect(lines.some((line) => line.msg === 'a lease had vanished; taken back')).toBe(true), { timeout: 15_000 });
    expect(await cancel(a.url, 'quiet')).toBe(true);
    const [fromA, fromB] = await Promise.all([drain(head), follower]);
    expect(lastIsCancelled(fromA)).toBe(true);
    expect(fromB.map((f) => [f.id, f.event, f.data])).toEqual(fromA.map((f) => [f.id, f.event, f.data]));
    expect((await history(b.url, 'quiet')).messages.at(-1)).toMatchObject({ role: 'assistant', status: 'interrupted', content: DEFAULT_TOKENS.join('') });
  });

  it('9: a Redis that stalls past REDIS_OUTAGE_WAIT_MS (the writes its owner gave up on run late) shows one reply everywhere: the same events under the same ids, as stored', async () => {
    const setup = await pair({ SIM_DELAY_MS: 50, RESUME_GRACE_MS: 60_000 });
    if (!setup) return;
    const { a, b, admin: client } = setup;
    const body = { message: LONG, session_id: 'stalled' };
    const head = streamSseRoute(a.url, body);
    const first = (await head.next()).value as SseFrame;
    const follower = streamSseRoute(b.url, body, { headers: { 'last-event-id': first.id! } });
    const followed = (await follower.next()).value as SseFrame;
    await client.call('CLIENT', 'PAUSE', '2500', 'ALL');
    const [fromA, fromB] = await Promise.all([drain(head), drain(follower)]);
    fromB.unshift(followed);
    const generation = first.id!.split(':')[0]!;
    // Once the reply is over everywhere: a full resume on either instance gives the same reply...
    await vi.waitFor(async () => expect((await history(b.url, 'stalled')).messages.at(-1)?.role).toBe('assistant'), { timeout: 30_000 });
    const whole = await drain(streamSseRoute(b.url, body, { headers: { 'last-event-id': `${generation}:0` } }));
    const wholeOnA = await drain(streamSseRoute(a.url, body, { headers: { 'last-event-id': `${generation}:0` } }));
    const seen = (list: SseFrame[]) => list.map((f) => `${f.id}|${f.event}|${f.data}`);
    expect(seen(wholeOnA)).toEqual(seen(whole));
    // ...each client was shown that reply, event for event, up to where its stream ended...
    const byId = new Map(whole.map((f) => [f.id, `${f.id}|${f.event}|${f.data}`]));
    for (const frame of [first, ...fromA, ...fromB]) if (frame.event === 'message') expect(byId.get(frame.id)).toBe(`${frame.id}|${frame.event}|${frame.data}`);
    // ...and its text is the one stored.
    const text = whole.flatMap((f) => (f.event === 'message' && f.id !== whole.at(-1)!.id ? [SseMessageData.parse(JSON.parse(f.data)).delta] : [])).join('');
    expect((await history(b.url, 'stalled')).messages.at(-1)?.content).toBe(text);
  });

  it.each([
    ['2 s behind', -2000, {}],
    ['2 s ahead of', 2000, {}],
    ['in step with (REDIS_OUTAGE_WAIT_MS=0)', 0, { REDIS_OUTAGE_WAIT_MS: 0 }],
  ])("9: an instance whose clock is %s Redis's fails no reply", async (_name, skewMs, settings) => {
    const redis = await startRedis();
    if (!redis) return;
    const realNow = Date.now;
    Date.now = () => realNow() + skewMs;
    try {
      const server = await startServer({ REDIS_URL: redis.url, SIM_DELAY_MS: 1, ...settings });
      for (let i = 0; i < 5; i++) {
        const frames = await drain(streamSseRoute(server.url, { message: `hello ${i}`, session_id: `clock-${i}` }));
        expect(frames.at(-1)?.event, `reply ${i}: ${frames.at(-1)?.data}`).toBe('message');
      }
    } finally {
      Date.now = realNow;
    }
  });

  it('a finished reply resumed after its last event gets nothing more, and an id it never made is 404, on its own instance as on another', async () => {
    const setup = await pair({ SIM_DELAY_MS: 0, RESUME_GRACE_MS: 60_000 });
    if (!setup) return;
    const { a, b } = setup;
    const frames = await drain(streamSseRoute(a.url, { message: 'hello there', session_id: 'ended' }));
    const last = frames.at(-1)!;
    expect(last.event).toBe('message');
    const [generation, seq] = last.id!.split(':');
    for (const url of [a.url, b.url]) {
      const after = await drain(streamSseRoute(url, { message: 'hello there', session_id: 'ended' }, { headers: { 'last-event-id': last.id! } }));
      expect(after).toEqual([]);
      const beyond = await rawRequest(`${url}/v1/chat/stream`, {
        headers: { 'content-type': 'application/json', 'last-event-id': `${generation}:${Number(seq) + 6}` },
        body: JSON.stringify({ message: 'hello there', session_id: 'ended' }),
      });
      expect(beyond.status).toBe(404);
    }
  });

  it('12: a corrupt entry in a log ends the stream with a safe `unavailable` error; one in history is skipped', async () => {
    const setup = await pair({ SIM_DELAY_MS: 0 });
    if (!setup) return;
    const { b, admin: redis } = setup;
    // A reply's log as an instance left it, with its 3rd entry mangled (written by hand, say).
    const id = 'c0ffee00c0ffee00c0ffee00c0ffee00';
    await redis.set(`sluice:gen:{${id}}`, JSON.stringify({ id, owner: 'anonymous', sessionId: 'mangled', sessionKey: 'anonymous/mangled', stored: true }));
    for (const [seq, json] of [
      [1, '{"type":"delta","delta":"one ","index":1}'],
      [2, '{"type":"delta","delta":"two ","index":2}'],
      [3, '{"type":"delta","delta":42'],
    ] as const) {
      await redis.xadd(`sluice:ev:{${id}}`, `0-${seq}`, 'e', json, 'k', 'd');
    }
    const frames = await drain(streamSseRoute(b.url, { message: 'x', session_id: 'mangled' }, { headers: { 'last-event-id': `${id}:0` } }));
    expect(frames.map((f) => f.event)).toEqual(['message', 'message', 'error']);
    const error = SseErrorData.parse(JSON.parse(frames.at(-1)!.data));
    expect(error.message).toBe('The reply could not be followed; resume it in a moment');
    expect(error.partial).toBe('one two ');

    // History: a member that is not a message is skipped, the rest of the session still reads.
    await drain(streamSseRoute(b.url, { message: 'keep me', session_id: 'mixed' }));
    const [key] = await redis.keys('sluice:hm:*mixed*');
    await redis.zadd(key!, 99, '99|f||{"role":"robot"');
    const { messages } = await history(b.url, 'mixed');
    expect(messages.map((m) => m.role)).toEqual(['user', 'assistant']);
  });

  it('12: a Redis outage while B follows a reply reaches every transport as an `unavailable` error event', async () => {
    const setup = await pair({ SIM_DELAY_MS: 20, RESUME_GRACE_MS: 60_000 });
    if (!setup) return;
    const { a, b, redis } = setup;
    const head = streamSseRoute(a.url, { message: LONG, session_id: 'outage' });
    const first = (await head.next()).value as SseFrame;
    // B follows over the SSE route and over tRPC WebSocket.
    const sse = drain(streamSseRoute(b.url, { message: LONG, session_id: 'outage' }, { headers: { 'last-event-id': first.id! } }));
    const { client } = stockClient(b.url, 'ws');
    const trpcEvents: Array<{ type: string; code?: string }> = [];
    const trpc = new Promise<unknown>((resolve) => {
      client.chat.stream.subscribe(
        { message: LONG, sessionId: 'outage', lastEventId: first.id! },
        {
          onData: ({ data }) => {
            if (data.type === 'start') return;
            trpcEvents.push(data);
            if (data.type !== 'delta') resolve(undefined);
          },
          onError: (error) => resolve(error),
        },
      );
    });
    await vi.waitFor(() => expect(trpcEvents.length).toBeGreaterThan(2));
    await redis.stop();
    const sseFrames = await sse;
    expect(sseFrames.at(-1)?.event).toBe('error');
    expect(await trpc).toBeUndefined();
    expect(trpcEvents.at(-1)).toMatchObject({ type: 'error', code: 'unavailable' });
    await drain(head).catch(() => undefined);
    void a;
  });
});
