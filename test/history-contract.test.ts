import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import postgres from 'postgres';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import type { History } from '../server/core/store/history.ts';
import { MemoryHistory } from '../server/core/store/history/memory.ts';
import { PostgresHistory } from '../server/core/store/history/postgres.ts';
import { MIGRATIONS } from '../server/core/store/history/sql/migrations/index.ts';
import { SqliteHistory } from '../server/core/store/history/sqlite.ts';
import { RedisHistory } from '../server/core/store/history/redis.ts';
import { RedisConnection } from '../server/core/store/redis/connection.ts';
import { parseHostPorts } from '../server/core/store/redis/topology.ts';
import type { ChatMessage } from '../shared/index.ts';
import { startPostgres, type PostgresServer } from './helpers/postgres.ts';
import { startRedis } from './helpers/redis.ts';
import { startCluster, type ClusterSetup } from './helpers/redis-topologies.ts';

const logger = pino({ level: 'silent' });
const opened: History[] = [];
const connections: RedisConnection[] = [];
afterEach(async () => {
  for (const history of opened.splice(0)) await history.close();
  for (const connection of connections.splice(0)) await connection.close();
});
const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** One Redis Cluster (three masters) for the whole file. */
let cluster: Promise<ClusterSetup | undefined> | undefined;

/** One PostgreSQL server for the whole file; each test gets a database of its own. */
let pg: Promise<PostgresServer | undefined> | undefined;
const postgresServer = (): Promise<PostgresServer | undefined> => (pg ??= startPostgres());

/** An empty backend: `open` gives a store on it (again after a close, as a restarted process would). */
interface Place {
  open(clock: () => number): Promise<History>;
}

interface Backend {
  readonly name: string;
  /** True when what one store wrote is there for the next one opened on the same place. */
  readonly durable: boolean;
  /** True when several stores may be open on one place at once (instances sharing a database). */
  readonly shared: boolean;
  /** A fresh, empty place; undefined when the backend is not installed here. */
  place(): Promise<Place | undefined>;
}

const backends: Backend[] = [
  {
    name: 'memory',
    durable: false,
    shared: false,
    place: async () => ({ open: async (clock) => new MemoryHistory({ clock }) }),
  },
  {
    name: 'sqlite',
    durable: true,
    shared: false,
    place: async () => {
      const dir = mkdtempSync(join(tmpdir(), 'sluice-history-'));
      dirs.push(dir);
      // A directory that does not exist yet: the store creates it.
      const path = join(dir, 'data', 'history.db');
      return { open: (clock) => SqliteHistory.open({ path, logger, clock }) };
    },
  },
  {
    name: 'redis',
    durable: true,
    shared: true,
    place: async () => {
      // A redis-server of its own (the helper stops it after the test).
      const redis = await startRedis();
      if (!redis) return undefined;
      return {
        open: async (clock) => {
          const connection = new RedisConnection({ url: redis.url, logger, prefix: 'history-contract:' });
          connections.push(connection);
          expect(await connection.ready(5000)).toBe(true);
          return new RedisHistory(connection, { clock, logger });
        },
      };
    },
  },
  {
    name: 'redis cluster',
    durable: true,
    shared: true,
    place: async () => {
      // The file's cluster (it takes seconds to form); a prefix of its own is an empty place.
      const setup = await (cluster ??= startCluster());
      if (!setup) return undefined;
      const prefix = `history-contract-${randomUUID()}:`;
      return {
        open: async (clock) => {
          const connection = new RedisConnection({ topology: { kind: 'cluster', nodes: parseHostPorts(setup.nodes) }, logger, prefix });
          connections.push(connection);
          expect(await connection.ready(10_000)).toBe(true);
          return new RedisHistory(connection, { clock, logger });
        },
      };
    },
  },
  {
    name: 'postgres',
    durable: true,
    shared: true,
    place: async () => {
      const server = await postgresServer();
      if (!server) return undefined;
      const url = await server.createDatabase();
      return { open: (clock) => PostgresHistory.open({ url, logger, clock }) };
    },
  },
];

const T0 = Date.parse('2026-01-01T00:00:00Z');

interface Setup {
  readonly history: History;
  readonly place: Place;
  /** The stores' clock (epoch ms), which the test moves. */
  readonly clock: { now: number };
}

/** A store on a fresh place of `backend`; undefined when the backend is not installed. */
const setupFor = (backend: Backend) => async (): Promise<Setup | undefined> => {
  const place = await backend.place();
  if (!place) return undefined;
  const clock = { now: T0 };
  const history = await place.open(() => clock.now);
  opened.push(history);
  return { history, place, clock };
};

const user = (content: string, at = T0): ChatMessage => ({ role: 'user', content, status: 'complete', createdAt: new Date(at).toISOString() });
const keep = { keepLast: 100 };

describe.each(backends)('history contract: $name', (backend) => {
  const setup = setupFor(backend);

  it('numbers messages per session from 1 and reads them back as written, oldest first', async () => {
    const s = await setup();
    if (!s) return;
    const { history } = s;
    const reply: ChatMessage = {
      role: 'assistant',
      content: 'héllo 👋 "quoted" \n line',
      status: 'complete',
      createdAt: '2026-01-01T00:00:01.250Z',
      usage: { promptTokens: 12, completionTokens: 7 },
    };
    const failed: ChatMessage = { role: 'assistant', content: '', status: 'failed', createdAt: '2026-01-01T00:00:02.000Z' };
    expect(await history.append('o/a', user('one'), keep)).toBe(1);
    expect(await history.append('o/a', reply, keep)).toBe(2);
    expect(await history.append('o/b', user('other'), keep)).toBe(1);
    expect(await history.append('o/a', { ...failed, seq: 99 }, keep)).toBe(3); // a given seq is ignored
    expect(await history.read('o/a')).toEqual([
      { ...user('one'), seq: 1 },
      { ...reply, seq: 2 },
      { ...failed, seq: 3 },
    ]);
    expect(await history.read('o/b')).toEqual([{ ...user('other'), seq: 1 }]);
    expect(await history.read('o/missing')).toEqual([]);
    expect(await history.read('other-owner/a')).toEqual([]);
  });

  it('keeps a usage Sluice estimated marked as such, on a final message and on a draft it replaces', async () => {
    const s = await setup();
    if (!s) return;
    const { history } = s;
    const estimated: ChatMessage = {
      role: 'assistant',
      content: 'counted by Sluice',
      status: 'complete',
      createdAt: new Date(T0).toISOString(),
      usage: { promptTokens: 9, completionTokens: 4, estimated: true },
    };
    const reported: ChatMessage = { ...estimated, content: 'counted upstream', usage: { promptTokens: 9, completionTokens: 3 } };
    await history.append('o/u', user('q'), keep);
    await history.append('o/u', estimated, keep);
    await history.checkpoint('o/u', 'r', 'coun');
    await history.append('o/u', { ...estimated, status: 'interrupted' }, { ...keep, replyId: 'r' });
    await history.append('o/u', reported, keep);
    expect((await history.read('o/u')).map((m) => m.usage)).toEqual([
      undefined,
      { promptTokens: 9, completionTokens: 4, estimated: true },
      { promptTokens: 9, completionTokens: 4, estimated: true },
      { promptTokens: 9, completionTokens: 3 },
    ]);
  });

  it('keeps the newest keepLast messages, and never gives a position twice', async () => {
    const s = await setup();
    if (!s) return;
    const { history } = s;
    for (let i = 1; i <= 5; i++) await history.append('o/s', user(`m${i}`), { keepLast: 3 });
    expect((await history.read('o/s')).map((m) => [m.seq, m.content])).toEqual([
      [3, 'm3'],
      [4, 'm4'],
      [5, 'm5'],
    ]);
    expect(await history.append('o/s', user('m6'), { keepLast: 3 })).toBe(6);
    expect((await history.read('o/s')).map((m) => m.seq)).toEqual([4, 5, 6]);
  });

  it('trims past keepLast when a reply replaces its draft too, and a smaller keepLast catches up at the next append', async () => {
    const s = await setup();
    if (!s) return;
    const { history } = s;
    for (let i = 1; i <= 3; i++) await history.append('o/s', user(`m${i}`), { keepLast: 3 });
    await history.checkpoint('o/s', 'r', 'partial');
    const final: ChatMessage = { role: 'assistant', content: 'whole', status: 'complete', createdAt: new Date(T0).toISOString() };
    expect(await history.append('o/s', final, { keepLast: 3, replyId: 'r' })).toBe(4);
    expect((await history.read('o/s')).map((m) => [m.seq, m.content])).toEqual([
      [2, 'm2'],
      [3, 'm3'],
      [4, 'whole'],
    ]);
    await history.append('o/s', user('m5'), { keepLast: 2 });
    expect((await history.read('o/s')).map((m) => m.seq)).toEqual([4, 5]);
  });

  it('pages back from the newest: limit is the newest N, before a position', async () => {
    const s = await setup();
    if (!s) return;
    const { history } = s;
    for (let i = 1; i <= 10; i++) await history.append('o/s', user(`m${i}`), keep);
    const seqs = async (options: { limit?: number; before?: number }): Promise<number[]> => (await history.read('o/s', options)).map((m) => m.seq);
    expect(await seqs({ limit: 3 })).toEqual([8, 9, 10]);
    expect(await seqs({ limit: 3, before: 8 })).toEqual([5, 6, 7]);
    expect(await seqs({ limit: 3, before: 3 })).toEqual([1, 2]);
    expect(await seqs({ limit: 3, before: 1 })).toEqual([]);
    expect(await seqs({ before: 4 })).toEqual([1, 2, 3]);
    expect(await seqs({ limit: 50 })).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(await seqs({ before: 1_000_000_000_000 })).toHaveLength(10);
    // Paging through the whole session with a cursor gives each message once.
    const all: number[] = [];
    let before: number | undefined;
    for (;;) {
      const page = await history.read('o/s', { limit: 4, before });
      if (page.length === 0) break;
      all.unshift(...page.map((m) => m.seq));
      before = page[0]!.seq;
    }
    expect(all).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    await expect(history.read('o/s', { limit: 0 })).rejects.toThrow(/limit/);
    await expect(history.read('o/s', { before: 1.5 })).rejects.toThrow(/before/);
    await expect(history.append('o/s', user('x'), { keepLast: 0 })).rejects.toThrow(/keepLast/);
  });

  it("keeps a running reply's checkpoints as a draft right after its user message, replaced by the final message", async () => {
    const s = await setup();
    if (!s) return;
    const { history, clock } = s;
    await history.append('o/s', user('question'), keep);
    clock.now = T0 + 1000;
    await history.checkpoint('o/s', 'r1', 'The ans');
    const draft = { role: 'assistant', content: 'The ans', status: 'interrupted', createdAt: new Date(T0 + 1000).toISOString(), seq: 2, draftOf: 'r1' };
    expect(await history.read('o/s')).toEqual([{ ...user('question'), seq: 1 }, draft]);
    await history.checkpoint('o/s', 'r1', 'The answer is');
    expect((await history.read('o/s'))[1]).toEqual({ ...draft, content: 'The answer is' });

    const final: ChatMessage = {
      role: 'assistant',
      content: 'The answer is 42.',
      status: 'complete',
      createdAt: new Date(T0 + 2000).toISOString(),
      usage: { promptTokens: 3, completionTokens: 5 },
    };
    expect(await history.append('o/s', final, { keepLast: 100, replyId: 'r1' })).toBe(2);
    expect(await history.read('o/s')).toEqual([
      { ...user('question'), seq: 1 },
      { ...final, seq: 2 },
    ]);

    // A late checkpoint, or the final appended again (a retry), changes nothing.
    await history.checkpoint('o/s', 'r1', 'The ans');
    expect(await history.append('o/s', { ...final, content: 'again' }, { keepLast: 100, replyId: 'r1' })).toBe(2);
    expect(await history.read('o/s')).toEqual([
      { ...user('question'), seq: 1 },
      { ...final, seq: 2 },
    ]);

    // The next turn goes after it.
    expect(await history.append('o/s', user('next'), keep)).toBe(3);
    await history.checkpoint('o/s', 'r2', 'partial');
    expect((await history.read('o/s')).map((m) => [m.seq, m.status, m.draftOf])).toEqual([
      [1, 'complete', undefined],
      [2, 'complete', undefined],
      [3, 'complete', undefined],
      [4, 'interrupted', 'r2'],
    ]);
  });

  it("begins a turn: the user's message, then its reply's empty draft, which checkpoints fill and the final message replaces", async () => {
    const s = await setup();
    if (!s) return;
    const { history, clock } = s;
    // A new session starts at 1.
    expect(await history.begin('o/new', user('hi'), { keepLast: 100, replyId: 'r0' })).toBe(1);
    expect((await history.read('o/new')).map((m) => [m.seq, m.role, m.status, m.content, m.draftOf])).toEqual([
      [1, 'user', 'complete', 'hi', undefined],
      [2, 'assistant', 'interrupted', '', 'r0'],
    ]);

    await history.append('o/s', user('first'), keep);
    clock.now = T0 + 1000;
    expect(await history.begin('o/s', user('question', T0 + 1000), { keepLast: 100, replyId: 'r1' })).toBe(2);
    const draft = { role: 'assistant', content: '', status: 'interrupted', createdAt: new Date(T0 + 1000).toISOString(), seq: 3, draftOf: 'r1' };
    expect(await history.read('o/s')).toEqual([{ ...user('first'), seq: 1 }, { ...user('question', T0 + 1000), seq: 2 }, draft]);
    await history.checkpoint('o/s', 'r1', 'The ans');
    expect((await history.read('o/s'))[2]).toEqual({ ...draft, content: 'The ans' });
    const final: ChatMessage = { role: 'assistant', content: 'The answer.', status: 'complete', createdAt: new Date(T0 + 2000).toISOString() };
    expect(await history.append('o/s', final, { keepLast: 100, replyId: 'r1' })).toBe(3);
    expect((await history.read('o/s')).map((m) => [m.seq, m.content, m.draftOf])).toEqual([
      [1, 'first', undefined],
      [2, 'question', undefined],
      [3, 'The answer.', undefined],
    ]);

    // The next turn goes after it; keepLast trims as an append of the message would, with the draft on top.
    expect(await history.begin('o/s', user('next'), { keepLast: 3, replyId: 'r2' })).toBe(4);
    expect((await history.read('o/s')).map((m) => m.seq)).toEqual([2, 3, 4, 5]);

    // It touches the session (for retention) as an append does.
    clock.now = T0 + 10_000;
    await history.begin('o/new', user('again'), { keepLast: 100, replyId: 'r3' });
    expect(await history.expireIdle(T0 + 5000)).toBe(1);
    expect(await history.read('o/s')).toEqual([]);
    expect(await history.read('o/new')).toHaveLength(4);
  });

  it('appends a final message that had no checkpoint, and then ignores checkpoints of its reply', async () => {
    const s = await setup();
    if (!s) return;
    const { history } = s;
    await history.append('o/s', user('q'), keep);
    const final: ChatMessage = { role: 'assistant', content: 'short', status: 'interrupted', createdAt: new Date(T0).toISOString() };
    expect(await history.append('o/s', final, { keepLast: 100, replyId: 'r1' })).toBe(2);
    await history.checkpoint('o/s', 'r1', 'sho');
    expect(await history.read('o/s')).toEqual([
      { ...user('q'), seq: 1 },
      { ...final, seq: 2 },
    ]);
  });

  it('lets a reply that went on to its end replace the interrupted message another process ended its draft with', async () => {
    // Another process took a reply that was still running for a crash's (PostgreSQL without Redis:
    // a deploy's new instance took the database's lock while this one's link to it was down) and
    // ended its draft `interrupted`, at its last checkpoint. The reply then finished, and its
    // client got all of it: history keeps what the client got, in the same place.
    const s = await setup();
    if (!s) return;
    const { history } = s;
    await history.begin('o/s', user('question'), { keepLast: 100, replyId: 'r1' });
    await history.checkpoint('o/s', 'r1', 'The ans');
    const ended: ChatMessage = { role: 'assistant', content: 'The ans', status: 'interrupted', createdAt: new Date(T0).toISOString() };
    expect(await history.append('o/s', ended, { keepLast: 100, replyId: 'r1' })).toBe(2);
    const final: ChatMessage = { role: 'assistant', content: 'The answer is 42.', status: 'complete', createdAt: new Date(T0 + 2000).toISOString() };
    expect(await history.append('o/s', final, { keepLast: 100, replyId: 'r1' })).toBe(2);
    expect(await history.read('o/s')).toEqual([
      { ...user('question'), seq: 1 },
      { ...final, seq: 2 },
    ]);
    // A final message is final: neither another end nor a retry moves it.
    expect(await history.append('o/s', { ...ended, content: 'The' }, { keepLast: 100, replyId: 'r1' })).toBe(2);
    expect(await history.append('o/s', { ...final, content: 'again' }, { keepLast: 100, replyId: 'r1' })).toBe(2);
    expect((await history.read('o/s'))[1]).toEqual({ ...final, seq: 2 });

    // Once the conversation went on past the interrupted end (the turn answered again, say), that
    // end stays: a late complete would give one message two answers.
    await history.begin('o/t', user('question'), { keepLast: 100, replyId: 'r2' });
    await history.append('o/t', ended, { keepLast: 100, replyId: 'r2' });
    await history.append('o/t', user('again'), keep);
    expect(await history.append('o/t', final, { keepLast: 100, replyId: 'r2' })).toBe(2);
    expect((await history.read('o/t')).map((m) => [m.seq, m.status, m.content])).toEqual([
      [1, 'complete', 'question'],
      [2, 'interrupted', 'The ans'],
      [3, 'complete', 'again'],
    ]);
  });

  it('runs writes called together in call order, and gives each caller its own result', async () => {
    const s = await setup();
    if (!s) return;
    const { history } = s;
    const seqs = await Promise.all(Array.from({ length: 300 }, (_, i) => history.append(`o/s${i % 3}`, user(`m${i}`), keep)));
    expect(seqs).toEqual(Array.from({ length: 300 }, (_, i) => Math.floor(i / 3) + 1));
    expect((await history.read('o/s1')).map((m) => m.content)).toEqual(Array.from({ length: 100 }, (_, i) => `m${i * 3 + 1}`));

    // Checkpoints of one reply called together all resolve; the last text is what stays.
    await history.append('o/c', user('q'), keep);
    await Promise.all(Array.from({ length: 50 }, (_, i) => history.checkpoint('o/c', 'r', 'x'.repeat(i + 1))));
    expect((await history.read('o/c')).map((m) => [m.seq, m.content, m.draftOf])).toEqual([
      [1, 'q', undefined],
      [2, 'x'.repeat(50), 'r'],
    ]);
    // A final message called between checkpoints stays the final one.
    const final: ChatMessage = { role: 'assistant', content: 'done', status: 'complete', createdAt: new Date(T0).toISOString() };
    await Promise.all([
      history.checkpoint('o/c', 'r', 'y'),
      history.append('o/c', final, { keepLast: 100, replyId: 'r' }),
      history.checkpoint('o/c', 'r', 'z'),
    ]);
    expect((await history.read('o/c')).at(-1)).toEqual({ ...final, seq: 2 });
  });

  it("deletes one owner's session, which then starts again from 1", async () => {
    const s = await setup();
    if (!s) return;
    const { history } = s;
    await history.append('alice/s', user('mine'), keep);
    await history.checkpoint('alice/s', 'r', 'draft');
    await history.append('bob/s', user('his'), keep);
    expect(await history.deleteSession('alice/s')).toBe(true);
    expect(await history.deleteSession('alice/s')).toBe(false);
    expect(await history.read('alice/s')).toEqual([]);
    expect((await history.read('bob/s')).map((m) => m.content)).toEqual(['his']);
    expect(await history.append('alice/s', user('again'), keep)).toBe(1);
  });

  it("expires sessions untouched since the cutoff (appends and a draft's first checkpoint touch; reads do not)", async () => {
    const s = await setup();
    if (!s) return;
    const { history, clock } = s;
    const DAY = 86_400_000;
    await history.append('o/old', user('a'), keep);
    await history.append('o/drafting', user('b'), keep);
    await history.append('o/active', user('c'), keep);
    clock.now = T0 + 10 * DAY;
    await history.checkpoint('o/drafting', 'r', 'still going');
    await history.append('o/active', user('d'), keep);
    clock.now = T0 + 15 * DAY;
    await history.checkpoint('o/drafting', 'r', 'still going, further'); // only the draft's first checkpoint touches
    clock.now = T0 + 20 * DAY;
    await history.read('o/old');
    expect(await history.expireIdle(T0 + 5 * DAY)).toBe(1);
    expect(await history.read('o/old')).toEqual([]);
    expect((await history.read('o/active')).map((m) => m.content)).toEqual(['c', 'd']);
    expect(await history.read('o/drafting')).toHaveLength(2);
    expect(await history.expireIdle(T0 + 5 * DAY)).toBe(0);
    // Both last touched at T0 + 10 days: a cutoff just after deletes them.
    expect(await history.expireIdle(T0 + 10 * DAY + 1)).toBe(2);
    expect(await history.read('o/active')).toEqual([]);
  });

  it('expires many idle sessions at once', async () => {
    const s = await setup();
    if (!s) return;
    const { history, clock } = s;
    await Promise.all(Array.from({ length: 1200 }, (_, i) => history.append(`o/s${i}`, user('x'), keep)));
    clock.now = T0 + 1;
    await history.append('o/recent', user('y'), keep);
    expect(await history.expireIdle(T0 + 1)).toBe(1200);
    expect(await history.read('o/recent')).toHaveLength(1);
  });

  it("limits an owner's sessions (maxSessions): a turn in a new one past it is refused and stores nothing; one in a session it holds never is", async () => {
    const s = await setup();
    if (!s) return;
    const { history } = s;
    const limited = (replyId: string, maxSessions = 2) => ({ keepLast: 100, replyId, maxSessions });
    expect(await history.begin('a/s1', user('one'), limited('r1'))).toBe(1);
    expect(await history.begin('a/s2', user('two'), limited('r2'))).toBe(1);
    await expect(history.begin('a/s3', user('three'), limited('r3'))).rejects.toMatchObject({
      code: 'rate_limited',
      reason: 'too_many_sessions',
      message: expect.stringMatching(/holds 2 sessions.*delete one/),
    });
    expect(await history.read('a/s3')).toEqual([]);
    // The sessions it holds take turns, even under a lower limit; nothing of them was dropped.
    expect(await history.begin('a/s1', user('again'), limited('r4'))).toBe(3);
    expect(await history.begin('a/s2', user('again'), limited('r5', 1))).toBe(3);
    expect((await history.read('a/s1')).map((m) => m.content)).toEqual(['one', '', 'again', '']);
    // Each owner counts its own; no limit is no limit.
    expect(await history.begin('b/s3', user('theirs'), limited('r6'))).toBe(1);
    expect(await history.begin('a/s3', user('unlimited'), { keepLast: 100, replyId: 'r7' })).toBe(1);
    expect(await history.begin('a/s4', user('unlimited'), { keepLast: 100, replyId: 'r8', maxSessions: 0 })).toBe(1);
    await expect(history.begin('a/s5', user('x'), limited('r9', 4))).rejects.toMatchObject({ code: 'rate_limited' });
    await expect(history.begin('a/s5', user('x'), { keepLast: 100, replyId: 'r9', maxSessions: -1 })).rejects.toThrow(/maxSessions/);
  });

  it("gives an owner's places back as its sessions are deleted or expire, and counts the sessions made by other writes", async () => {
    const s = await setup();
    if (!s) return;
    const { history, clock } = s;
    const limited = (replyId: string) => ({ keepLast: 100, replyId, maxSessions: 2 });
    await history.begin('a/old', user('q'), limited('r1'));
    // A reply's last message after its session was deleted makes the session again: it is the owner's, counted, never refused.
    await history.append(
      'a/made',
      { role: 'assistant', content: 'late', status: 'complete', createdAt: new Date(T0).toISOString() },
      { keepLast: 100, replyId: 'r0' },
    );
    await expect(history.begin('a/new', user('q'), limited('r2'))).rejects.toMatchObject({ code: 'rate_limited' });
    expect(await history.deleteSession('a/made')).toBe(true);
    expect(await history.begin('a/new', user('q'), limited('r3'))).toBe(1);
    await expect(history.begin('a/newer', user('q'), limited('r4'))).rejects.toMatchObject({ code: 'rate_limited' });
    clock.now = T0 + 1000;
    await history.append('a/new', user('still here'), keep);
    expect(await history.expireIdle(T0 + 1)).toBe(1);
    expect(await history.begin('a/newer', user('q'), limited('r5'))).toBe(1);
    // So does a checkpoint that makes a draft in a session that is not there (as late).
    await history.deleteSession('a/newer');
    await history.checkpoint('a/drafted', 'r6', 'late');
    await expect(history.begin('a/newest', user('q'), limited('r7'))).rejects.toMatchObject({ code: 'rate_limited' });
  });

  it('of new sessions begun together, only as many as the owner has places for get in', async () => {
    const s = await setup();
    if (!s) return;
    const { history } = s;
    await history.begin('a/first', user('q'), { keepLast: 100, replyId: 'r0', maxSessions: 3 });
    const outcomes = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) => history.begin(`a/race${i}`, user('q'), { keepLast: 100, replyId: `r${i + 1}`, maxSessions: 3 })),
    );
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(2);
    expect(outcomes.filter((o) => o.status === 'rejected').map((o) => (o.reason as { code: string }).code)).toEqual(Array(6).fill('rate_limited'));
    const kept = await Promise.all(Array.from({ length: 8 }, (_, i) => history.read(`a/race${i}`)));
    expect(kept.filter((messages) => messages.length > 0)).toHaveLength(2);
  });

  it('finishes the writes already called for when closed, then refuses calls', async () => {
    const s = await setup();
    if (!s) return;
    const { history, place } = s;
    const pending = [history.append('o/s', user('one'), keep), history.checkpoint('o/s', 'r', 'partial')];
    expect(await history.healthy()).toBe(true);
    await history.close();
    await Promise.all(pending);
    expect(await history.healthy()).toBe(false);
    await expect(history.read('o/s')).rejects.toMatchObject({ code: 'unavailable' });
    await expect(history.append('o/s', user('two'), keep)).rejects.toMatchObject({ code: 'unavailable' });
    await expect(history.checkpoint('o/s', 'r', 'more')).rejects.toMatchObject({ code: 'unavailable' });
    if (!backend.durable) return;
    const again = await place.open(() => T0);
    opened.push(again);
    expect((await again.read('o/s')).map((m) => m.content)).toEqual(['one', 'partial']);
  });
});

describe.each(backends.filter((b) => b.durable))('history contract, durable stores: $name', (backend) => {
  const setup = setupFor(backend);

  it('keeps everything across a restart: messages, positions, drafts as interrupted', async () => {
    const s = await setup();
    if (!s) return;
    const { history, place, clock } = s;
    await history.append('o/s', user('q1'), keep);
    await history.append(
      'o/s',
      { role: 'assistant', content: 'a1', status: 'complete', createdAt: new Date(T0).toISOString() },
      { keepLast: 100, replyId: 'r1' },
    );
    await history.append('o/s', user('q2'), keep);
    await history.checkpoint('o/s', 'r2', 'half of a2');
    const before = await history.read('o/s');
    await history.close();

    const again = await place.open(() => clock.now);
    opened.push(again);
    expect(await again.read('o/s')).toEqual(before);
    expect(before.at(-1)).toMatchObject({ seq: 4, status: 'interrupted', content: 'half of a2', draftOf: 'r2' });
    // The session takes new messages at once, after what was there.
    expect(await again.append('o/s', user('q3'), keep)).toBe(5);
  });
});

describe.each(backends.filter((b) => b.shared))('history contract, shared stores: $name', (backend) => {
  const setup = setupFor(backend);

  it("counts an owner's sessions across the stores open on one place: new sessions begun together through several get only the places left", async () => {
    const s = await setup();
    if (!s) return;
    const { history, place, clock } = s;
    const [second, third] = await Promise.all([place.open(() => clock.now), place.open(() => clock.now)]);
    opened.push(second, third);
    const stores = [history, second, third];
    await history.begin('a/first', user('q'), { keepLast: 100, replyId: 'r0', maxSessions: 3 });
    const outcomes = await Promise.allSettled(
      Array.from({ length: 9 }, (_, i) => stores[i % 3]!.begin(`a/race${i}`, user('q'), { keepLast: 100, replyId: `r${i + 1}`, maxSessions: 3 })),
    );
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(2);
    // A deletion through one store frees a place for another.
    expect(await third.deleteSession('a/first')).toBe(true);
    expect(await second.begin('a/after', user('q'), { keepLast: 100, replyId: 'r10', maxSessions: 3 })).toBe(1);
  });
});

/** A PostgreSQL store on a database of its own, holding one message ('before'), and its server (to stop, freeze, restart). */
async function postgresWithOneMessage(): Promise<{ server: PostgresServer; history: PostgresHistory } | undefined> {
  const server = await postgresServer();
  if (!server) return undefined;
  const history = await PostgresHistory.open({ url: await server.createDatabase(), logger });
  opened.push(history);
  await history.append('o/s', user('before'), keep);
  return { server, history };
}

describe('PostgreSQL history: migrations', () => {
  it('runs each migration once when several instances start together, and none when they are applied', async () => {
    const server = await postgresServer();
    if (!server) return;
    const url = await server.createDatabase();
    const instances = await Promise.all(Array.from({ length: 4 }, () => PostgresHistory.open({ url, logger })));
    opened.push(...instances);
    const client = postgres(url, { max: 1, onnotice: () => undefined });
    try {
      const rows = await client`SELECT version, name FROM history_migrations ORDER BY version`;
      expect(rows.map((r) => [r.version, r.name])).toEqual(MIGRATIONS.map((m) => [m.version, m.name]));
      // A SQLite-only step is recorded here and not run: no index of drafts, which PostgreSQL never looks for.
      expect(await client`SELECT indexname FROM pg_indexes WHERE tablename = 'history_messages' ORDER BY indexname`).toEqual([
        { indexname: 'history_messages_pkey' },
        { indexname: 'history_messages_reply' },
      ]);
      // Each instance works on the one schema.
      await instances[0]!.append('o/s', { role: 'user', content: 'hi', status: 'complete', createdAt: new Date().toISOString() }, { keepLast: 10 });
      expect(await instances[3]!.read('o/s')).toHaveLength(1);
      const later = await PostgresHistory.open({ url, logger });
      opened.push(later);
      expect((await client`SELECT count(*)::int AS n FROM history_migrations`)[0]!.n).toBe(MIGRATIONS.length);
    } finally {
      await client.end();
    }
  });

  it('answers unavailable while PostgreSQL is down, and works again once it is back', async () => {
    const setup = await postgresWithOneMessage();
    if (!setup) return;
    const { server, history } = setup;
    await server.halt();
    try {
      await expect(history.append('o/s', user('during'), keep)).rejects.toMatchObject({ code: 'unavailable' });
      await expect(history.checkpoint('o/s', 'r', 'during')).rejects.toMatchObject({ code: 'unavailable' });
      await expect(history.read('o/s')).rejects.toMatchObject({ code: 'unavailable' });
      expect(await history.healthy()).toBe(false);
    } finally {
      await server.resume();
    }
    await vi.waitFor(async () => expect(await history.healthy()).toBe(true));
    await history.append('o/s', user('after'), keep);
    expect((await history.read('o/s')).map((m) => [m.seq, m.content])).toEqual([
      [1, 'before'],
      [2, 'after'],
    ]);
  });

  it('writes again within a second or two of PostgreSQL coming back, however many writes failed while it was down', async () => {
    const setup = await postgresWithOneMessage();
    if (!setup) return;
    const { server, history } = setup;
    await server.halt();
    try {
      // What a running instance does through an outage: checkpoints and retried finals, over and over.
      for (let i = 0; i < 7; i++) await expect(history.checkpoint('o/s', 'r', `during ${i}`)).rejects.toMatchObject({ code: 'unavailable' });
    } finally {
      await server.resume();
    }
    const back = performance.now();
    await vi.waitFor(() => history.append('o/s', user('after'), keep), { timeout: 10_000, interval: 100 });
    expect(performance.now() - back).toBeLessThan(2500);
  });

  it('answers unavailable when PostgreSQL stops answering (frozen, its connections open): reads and health do not wait for it', async () => {
    const setup = await postgresWithOneMessage();
    if (!setup) return;
    const { server, history } = setup;
    // Every reader connection open, so that the freeze catches them mid-conversation.
    await Promise.all(Array.from({ length: 9 }, () => history.read('o/s')));
    server.pause();
    try {
      const started = performance.now();
      expect(await history.healthy()).toBe(false);
      await expect(history.read('o/s')).rejects.toMatchObject({ code: 'unavailable' });
      expect(performance.now() - started).toBeLessThan(8000);
    } finally {
      server.unpause();
    }
    await vi.waitFor(async () => expect(await history.healthy()).toBe(true));
  });

  it('answers every write within a bound while a lock holds its tables, however many are queued', async () => {
    // The PostgreSQL hunt: a table locked for 45 s under 200 new turns answered them after 10, 20,
    // 30, 40 s (one batch of 64 after another, each waiting out the statement timeout), and the
    // queue takes up to 10,000 writes: about 26 minutes of waiting at the end of it.
    const server = await postgresServer();
    if (!server) return;
    const url = await server.createDatabase();
    const history = await PostgresHistory.open({ url, logger, statementTimeoutMs: 1000 });
    opened.push(history);
    const admin = postgres(url, { max: 1, onnotice: () => undefined });
    let locked!: () => void;
    const taken = new Promise<void>((resolve) => (locked = resolve));
    const holding = admin.begin(async (tx) => {
      await tx`LOCK TABLE history_messages, history_sessions IN ACCESS EXCLUSIVE MODE`;
      locked();
      await tx`SELECT pg_sleep(6)`;
    });
    try {
      await taken;
      const started = performance.now();
      const answeredAfter = await Promise.all(
        Array.from({ length: 400 }, (_, i) =>
          history.begin(`o/s${i}`, user(`turn ${i}`), { keepLast: 100, replyId: `r${i}` }).then(
            () => ({ ok: true, ms: performance.now() - started }),
            (error: unknown) => ({ ok: false, code: (error as { code?: string }).code, ms: performance.now() - started }),
          ),
        ),
      );
      expect(answeredAfter.filter((a) => a.ok)).toEqual([]);
      expect(new Set(answeredAfter.map((a) => (a as { code?: string }).code))).toEqual(new Set(['unavailable']));
      // The statement timeout once for the batch under way, and the queue's own wait for the rest.
      expect(Math.max(...answeredAfter.map((a) => a.ms))).toBeLessThan(2500);
    } finally {
      await holding;
      await admin.end({ timeout: 1 });
    }
    await history.begin('o/after', user('after'), { keepLast: 100, replyId: 'r-after' });
  });

  it('refuses to open, saying where, when PostgreSQL cannot be reached', async () => {
    const server = await postgresServer();
    if (!server) return;
    const closedPort = 'postgres://postgres:secret@127.0.0.1:1/db';
    const error = await PostgresHistory.open({ url: closedPort, logger }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'unavailable', message: 'Cannot open the history database at 127.0.0.1:1/db' });
    await expect(PostgresHistory.open({ url: 'mysql://x', logger })).rejects.toThrow(/postgres:\/\//);
  });
});
