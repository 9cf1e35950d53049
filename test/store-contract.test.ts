import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { AppendResult, EventLog, GenerationRecord } from '../server/core/store/event-log.ts';
import { MemoryEventLog } from '../server/core/store/event-log/memory.ts';
import { RedisEventLog } from '../server/core/store/event-log/redis.ts';
import type { LeaseStore } from '../server/core/store/lease-store.ts';
import { MemoryLeaseStore } from '../server/core/store/leases/memory.ts';
import { RedisLeaseStore } from '../server/core/store/leases/redis.ts';
import { RedisConnection } from '../server/core/store/redis/connection.ts';
import { parseHostPorts, type RedisTopology } from '../server/core/store/redis/topology.ts';
import type { Signals } from '../server/core/store/signals.ts';
import { MemorySignals } from '../server/core/store/signals/memory.ts';
import { RedisSignals } from '../server/core/store/signals/redis.ts';
import type { StreamEvent } from '../shared/index.ts';
import { startRedis } from './helpers/redis.ts';
import { startCluster, type ClusterSetup } from './helpers/redis-topologies.ts';

// One contract per role of the store, run on every implementation of it (history has its own file,
// test/history-contract.test.ts), on one Redis and on a Redis Cluster too. Each backend gives two
// handles on the same data, as two instances would have.

const logger = pino({ level: 'silent' });
const connections: RedisConnection[] = [];
afterEach(async () => {
  for (const connection of connections.splice(0)) await connection.close();
});

/** Two connections to one fresh redis-server; undefined when it is not installed locally. */
async function redisPair(): Promise<[RedisConnection, RedisConnection] | undefined> {
  const redis = await startRedis();
  if (!redis) return undefined;
  return connectionPair({ kind: 'single', url: redis.url }, 'contract:');
}

/** One Redis Cluster (three masters) for the whole file: it takes seconds to form. */
let cluster: Promise<ClusterSetup | undefined> | undefined;

/** Two connections to the file's cluster, with a prefix of their own (an empty keyspace). */
async function clusterPair(): Promise<[RedisConnection, RedisConnection] | undefined> {
  const setup = await (cluster ??= startCluster());
  if (!setup) return undefined;
  return connectionPair({ kind: 'cluster', nodes: parseHostPorts(setup.nodes) }, `contract-${randomUUID()}:`);
}

async function connectionPair(topology: RedisTopology, prefix: string): Promise<[RedisConnection, RedisConnection]> {
  const make = async (): Promise<RedisConnection> => {
    const connection = new RedisConnection({ topology, logger, prefix });
    connections.push(connection);
    expect(await connection.ready(10_000)).toBe(true);
    return connection;
  };
  return [await make(), await make()];
}

interface Backend<T> {
  readonly name: string;
  pair(): Promise<[T, T] | undefined>;
}

function backends<T>(memory: () => T, redis: (connection: RedisConnection) => T): Backend<T>[] {
  return [
    {
      name: 'memory',
      pair: async () => {
        const one = memory();
        return [one, one];
      },
    },
    {
      name: 'redis',
      pair: async () => {
        const pair = await redisPair();
        return pair && [redis(pair[0]), redis(pair[1])];
      },
    },
    {
      name: 'redis cluster',
      pair: async () => {
        const pair = await clusterPair();
        return pair && [redis(pair[0]), redis(pair[1])];
      },
    },
  ];
}

const delta = (i: number): StreamEvent => ({ type: 'delta', delta: `w${i} `, index: i });
const record = (id: string): GenerationRecord => ({ id, owner: 'o', sessionId: 's', sessionKey: 'o/s', stored: true });

describe.each(
  backends<LeaseStore>(
    () => new MemoryLeaseStore(),
    (c) => new RedisLeaseStore(c),
  ),
)('lease store contract: $name', (backend) => {
  it('gives a lease to one holder at a time, expiring it when not refreshed', async () => {
    const pair = await backend.pair();
    if (!pair) return;
    const [a, b] = pair;
    expect(await a.acquire('lock', 'g1', 10_000)).toBe(true);
    expect(await a.acquire('lock', 'g1', 10_000)).toBe(true); // its holder may take it again
    expect(await b.acquire('lock', 'g2', 10_000)).toBe(false);
    expect(await b.holder('lock')).toBe('g1');
    expect(await b.refresh('lock', 'g2', 10_000)).toBe(false);
    expect(await a.refresh('lock', 'g1', 10_000)).toBe(true);
    await b.release('lock', 'g2'); // not the holder: no effect
    expect(await a.holder('lock')).toBe('g1');
    await a.release('lock', 'g1');
    expect(await b.holder('lock')).toBeUndefined();
    expect(await a.refresh('lock', 'g1', 10_000)).toBe(false);
    expect(await b.acquire('lock', 'g3', 50)).toBe(true);
    await vi.waitFor(async () => expect(await a.acquire('lock', 'g4', 10_000)).toBe(true));
  });

  it('hands out at most `limit` slots per key; released and expired slots are free again', async () => {
    const pair = await backend.pair();
    if (!pair) return;
    const [a, b] = pair;
    expect(await a.acquireSlot('k', 'm1', 2, 10_000)).toBe(true);
    expect(await b.acquireSlot('k', 'm2', 2, 50)).toBe(true);
    expect(await a.acquireSlot('k', 'm3', 2, 10_000)).toBe(false);
    expect(await a.acquireSlot('other', 'm3', 2, 10_000)).toBe(true);
    expect(await a.refreshSlot('k', 'm1', 10_000)).toBe(true);
    expect(await a.refreshSlot('k', 'nobody', 10_000)).toBe(false);
    await vi.waitFor(async () => expect(await a.acquireSlot('k', 'm3', 2, 10_000)).toBe(true));
    await b.releaseSlot('k', 'm1');
    expect(await b.refreshSlot('k', 'm1', 10_000)).toBe(false);
    expect(await b.acquireSlot('k', 'm4', 2, 10_000)).toBe(true);
  });

  it('counts hits in a fixed window', async () => {
    const pair = await backend.pair();
    if (!pair) return;
    const [a, b] = pair;
    expect((await a.hitWindow('w', 60_000)).count).toBe(1);
    const second = await b.hitWindow('w', 60_000);
    expect(second.count).toBe(2);
    expect(second.resetInMs).toBeGreaterThan(0);
    expect(second.resetInMs).toBeLessThanOrEqual(60_000);
    expect((await a.hitWindow('w2', 50)).count).toBe(1);
    await vi.waitFor(async () => expect((await b.hitWindow('w2', 50)).count).toBe(1));
  });
});

describe.each(
  backends<EventLog>(
    () => new MemoryEventLog({ shared: true }),
    (c) => new RedisEventLog(c),
  ),
)('event log contract: $name', (backend) => {
  it('logs events in order, refuses a position twice, and reads after a position', async () => {
    const pair = await backend.pair();
    if (!pair) return;
    const [a, b] = pair;
    const write = await a.open(record('gen1'), 60_000);
    expect(write).toBeTypeOf('function');
    expect(await b.load('gen1')).toEqual(record('gen1'));
    expect(await b.load('nope')).toBeUndefined();
    for (let i = 1; i <= 5; i++) expect(await write!(i, delta(i))).toBe('added');
    expect(await b.append('gen1', 5, delta(99))).toBe('duplicate');
    // In order, without holes.
    expect(await b.append('gen1', 7, delta(7))).toBe('gap');
    const after2 = await b.read('gen1', 2, 0);
    expect(after2.map((e) => e.seq)).toEqual([3, 4, 5]);
    expect(after2[0]!.event).toEqual(delta(3));
    expect(await b.read('gen1', 5, 0)).toEqual([]);
  });

  it('logs events asked for together (many replies in one turn) each in its own log, refusing repeats', async () => {
    const pair = await backend.pair();
    if (!pair) return;
    const [a, b] = pair;
    const asked: Array<Promise<AppendResult>> = [];
    for (let i = 1; i <= 4; i++) for (const gen of ['batch-a', 'batch-b', 'batch-c']) asked.push(a.append(gen, i, delta(i)));
    asked.push(a.append('batch-b', 2, delta(42)));
    const added = await Promise.all(asked);
    expect(added.slice(0, 12).every((r) => r === 'added')).toBe(true);
    expect(added[12]).toBe('duplicate');
    for (const gen of ['batch-a', 'batch-b', 'batch-c']) {
      expect(await b.read(gen, 0, 0)).toEqual([1, 2, 3, 4].map((seq) => ({ seq, event: delta(seq) })));
    }
  });

  it('takes nothing after a terminal event: a reply ended by another instance stays ended', async () => {
    const pair = await backend.pair();
    if (!pair) return;
    const [a, b] = pair;
    expect(await a.append('gen-end', 1, delta(1))).toBe('added');
    const ending: StreamEvent = { type: 'error', code: 'interrupted', message: 'gone', partial: 'w1 ' };
    expect(await b.append('gen-end', 2, ending)).toBe('added');
    // The instance that ran it wakes up and goes on: refused, at the ending's position and after it.
    expect(await a.append('gen-end', 2, delta(2))).toBe('ended');
    expect(await a.append('gen-end', 3, delta(3))).toBe('ended');
    expect(await a.append('gen-end', 1, delta(1))).toBe('duplicate');
    expect((await b.read('gen-end', 0, 0)).map((e) => e.event.type)).toEqual(['delta', 'error']);
  });

  it('adds nothing after its deadline: a write its writer gave up on, run late by a stalled store, does not land', async () => {
    const pair = await backend.pair();
    if (!pair) return;
    const [a, b] = pair;
    // A log learns from its answers how far the store's clock is from this host's (until then, a
    // deadline cannot be told to it).
    let probe = 0;
    await vi.waitFor(async () => {
      const result = await a.append('gen-clock', probe + 1, delta(probe + 1), Date.now() - 1000);
      if (result === 'added') probe++;
      expect(result).toBe('expired');
    });
    expect(await a.append('gen-late', 1, delta(1), Date.now() + 60_000)).toBe('added');
    expect(await a.append('gen-late', 2, delta(2), Date.now() - 1000)).toBe('expired');
    // A position already taken is a duplicate, deadline or not (a retry whose first try landed).
    expect(await a.append('gen-late', 1, delta(1), Date.now() - 1000)).toBe('duplicate');
    expect(await a.append('gen-late', 2, delta(2))).toBe('added');
    expect((await b.read('gen-late', 0, 0)).map((e) => e.seq)).toEqual([1, 2]);
    // Which positions it holds, read one at a time.
    expect([await b.holds('gen-late', 2), await b.holds('gen-late', 3), await b.holds('gen-none', 1)]).toEqual([true, false, false]);
  });

  it('wakes a waiting reader when an event arrives, and returns empty on timeout or abort', async () => {
    const pair = await backend.pair();
    if (!pair) return;
    const [a, b] = pair;
    const waiting = b.read('gen2', 0, 10_000);
    await a.append('gen2', 1, delta(1));
    expect((await waiting).map((e) => e.seq)).toEqual([1]);
    expect(await b.read('gen2', 1, 30)).toEqual([]);
    const controller = new AbortController();
    const aborted = b.read('gen2', 1, 10_000, controller.signal);
    controller.abort();
    expect(await aborted).toEqual([]);
  });

  it('forgets a finished log after its time to live', async () => {
    const pair = await backend.pair();
    if (!pair) return;
    const [a, b] = pair;
    await a.open(record('gen3'), 60_000);
    await a.append('gen3', 1, delta(1));
    await a.expire('gen3', 50);
    await vi.waitFor(async () => {
      expect(await b.load('gen3')).toBeUndefined();
      expect(await b.read('gen3', 0, 0)).toEqual([]);
    });
  });

  it('tracks listeners with expiry', async () => {
    const pair = await backend.pair();
    if (!pair) return;
    const [a, b] = pair;
    await a.touchListener('gen4', 'l1', 10_000);
    await a.touchListener('gen4', 'l2', 50);
    expect(await b.countListeners('gen4')).toBeGreaterThanOrEqual(1);
    await vi.waitFor(async () => expect(await b.countListeners('gen4')).toBe(1));
    await a.dropListener('gen4', 'l1');
    expect(await b.countListeners('gen4')).toBe(0);
  });
});

describe('event log of one process', () => {
  it('keeps nothing: the generations serve every listener themselves', async () => {
    const log = new MemoryEventLog();
    expect(await log.open(record('solo'), 60_000)).toBeUndefined();
    expect(await log.load('solo')).toBeUndefined();
  });
});

describe.each(
  backends<Signals>(
    () => new MemorySignals(),
    (c) => new RedisSignals(c),
  ),
)('signals contract: $name', (backend) => {
  it("keeps a cancel's mark, once its reply has settled, only as long as a settled reply's", async () => {
    const pair = await backend.pair();
    if (!pair) return;
    const [a, b] = pair;
    // A cancel lasts as long as a reply may run; the settle that reads it ends its use.
    expect(await a.requestCancel('gen-short', 24 * 60 * 60 * 1000)).toBe(true);
    expect(await b.settle('gen-short', 200)).toBe('cancelled');
    expect(await a.cancelled(['gen-short'])).toEqual(['gen-short']);
    await vi.waitFor(async () => expect(await a.cancelled(['gen-short'])).toEqual([]), { timeout: 5_000 });
    // So too when an instance ends the reply as an orphan: its long mark is for an ending, not a cancel's.
    expect(await a.requestCancel('gen-orphan', 24 * 60 * 60 * 1000)).toBe(true);
    expect(await b.settle('gen-orphan', 200, { endingTtlMs: 24 * 60 * 60 * 1000 })).toBe('cancelled');
    await vi.waitFor(async () => expect(await a.cancelled(['gen-orphan'])).toEqual([]), { timeout: 5_000 });
  });

  it('delivers cancels to every instance, and decides each one against the reply settling', async () => {
    const pair = await backend.pair();
    if (!pair) return;
    const [a, b] = pair;
    const seen: string[] = [];
    const unsubscribe = b.onCancel((id) => seen.push(id));
    // The subscription may take a moment: each try is a new generation, and the first one delivered
    // (a later try's cancel may overtake an earlier one's on a loaded machine) is the one followed.
    let n = 0;
    await vi.waitFor(
      async () => {
        expect(await a.requestCancel(`gen5-${++n}`, 60_000)).toBe(true);
        expect(seen.length).toBeGreaterThan(0);
      },
      { timeout: 15_000, interval: 100 },
    );
    const delivered = seen[0]!;
    expect(delivered).toMatch(/^gen5-\d+$/);
    // Once asked, a second cancel changes nothing, and the reply cannot settle: it is cancelled.
    expect(await b.requestCancel(delivered, 60_000)).toBe(false);
    expect(await b.settle(delivered, 60_000)).toBe('cancelled');
    expect(await a.cancelled([delivered, 'gen-other'])).toEqual([delivered]);
    // A reply that settled first is not cancelled: the cancel answers false.
    expect(await a.settle('gen6', 60_000)).toBe('settled');
    expect(await b.requestCancel('gen6', 60_000)).toBe(false);
    expect(await b.cancelled(['gen6'])).toEqual([]);
    // A reply another instance ended as an orphan first is not its owner's to settle any more;
    // one its owner settled first is ended as an orphan all the same (the owner's final write wins
    // there), and a cancel after either answers false.
    expect(await b.settle('gen8', 60_000, { endingTtlMs: 120_000 })).toBe('settled');
    expect(await a.settle('gen8', 60_000)).toBe('ended');
    expect(await b.requestCancel('gen8', 60_000)).toBe(false);
    expect(await a.settle('gen9', 60_000)).toBe('settled');
    expect(await b.settle('gen9', 60_000, { endingTtlMs: 120_000 })).toBe('settled');
    // A cancel that came first decides for the orphan's ending too.
    expect(await a.requestCancel('gen10', 60_000)).toBe(true);
    expect(await b.settle('gen10', 60_000, { endingTtlMs: 120_000 })).toBe('cancelled');
    unsubscribe();
    await a.requestCancel('gen7', 60_000);
    // A round trip later, it would have arrived.
    await a.cancelled(['gen7']);
    await b.cancelled(['gen7']);
    expect(seen).not.toContain('gen7');
  });
});
