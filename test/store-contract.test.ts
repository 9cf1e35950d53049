import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MemoryStore } from '../server/core/store/memory-store.ts';
import { RedisStore } from '../server/core/store/redis-store.ts';
import type { Store } from '../server/core/store/store.ts';
import type { ChatMessage, StreamEvent } from '../shared/index.ts';
import { startRedis } from './helpers/redis.ts';

const logger = pino({ level: 'silent' });
const stores: Store[] = [];
afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
});

interface Backend {
  readonly name: string;
  /** Two stores on one backend, as two instances would have; undefined when the backend is not installed. */
  pair(): Promise<[Store, Store] | undefined>;
}

const backends: Backend[] = [
  {
    name: 'memory',
    pair: async () => {
      const store = new MemoryStore();
      stores.push(store);
      return [store, store];
    },
  },
  {
    name: 'redis',
    pair: async () => {
      const redis = await startRedis();
      if (!redis) return undefined;
      const make = async (): Promise<RedisStore> => {
        const store = new RedisStore({ url: redis.url, logger, prefix: 'contract:' });
        stores.push(store);
        expect(await store.ready(5000)).toBe(true);
        return store;
      };
      return [await make(), await make()];
    },
  },
];

const message = (content: string): ChatMessage => ({ role: 'user', content, status: 'complete', createdAt: new Date().toISOString() });
const delta = (i: number): StreamEvent => ({ type: 'delta', delta: `w${i} `, index: i });

describe.each(backends)('store contract: $name', (backend) => {
  it('keeps history per session, in order', async () => {
    const pair = await backend.pair();
    if (!pair) return;
    const [a, b] = pair;
    await a.appendMessage('o/s1', message('one'), 100);
    await a.appendMessage('o/s1', message('two'), 100);
    await a.appendMessage('o/s2', message('other'), 100);
    expect((await b.getMessages('o/s1')).map((m) => m.content)).toEqual(['one', 'two']);
    expect(await b.getMessages('o/missing')).toEqual([]);
  });

  it('gives a session lock to one generation at a time, expiring it when not refreshed', async () => {
    const pair = await backend.pair();
    if (!pair) return;
    const [a, b] = pair;
    expect(await a.acquireSessionLock('o/s', 'g1', 10_000)).toBe(true);
    expect(await b.acquireSessionLock('o/s', 'g2', 10_000)).toBe(false);
    expect(await b.sessionLockHolder('o/s')).toBe('g1');
    expect(await b.refreshSessionLock('o/s', 'g2', 10_000)).toBe(false);
    expect(await a.refreshSessionLock('o/s', 'g1', 10_000)).toBe(true);
    await b.releaseSessionLock('o/s', 'g2'); // not the holder: no effect
    expect(await a.sessionLockHolder('o/s')).toBe('g1');
    await a.releaseSessionLock('o/s', 'g1');
    expect(await b.sessionLockHolder('o/s')).toBeUndefined();
    expect(await b.acquireSessionLock('o/s', 'g3', 50)).toBe(true);
    await vi.waitFor(async () => expect(await a.acquireSessionLock('o/s', 'g4', 10_000)).toBe(true));
  });

  it('logs events in order, refuses a position twice, and reads after a position', async () => {
    const pair = await backend.pair();
    if (!pair) return;
    const [a, b] = pair;
    await a.saveGeneration({ id: 'gen1', owner: 'o', sessionId: 's', sessionKey: 'o/s', stored: true }, 60_000);
    expect(await b.loadGeneration('gen1')).toEqual({ id: 'gen1', owner: 'o', sessionId: 's', sessionKey: 'o/s', stored: true });
    expect(await b.loadGeneration('nope')).toBeUndefined();
    for (let i = 1; i <= 5; i++) expect(await a.appendEvent('gen1', i, delta(i))).toBe(true);
    expect(await b.appendEvent('gen1', 5, delta(99))).toBe(false);
    const after2 = await b.readEvents('gen1', 2, 0);
    expect(after2.map((e) => e.seq)).toEqual([3, 4, 5]);
    expect(after2[0]!.event).toEqual(delta(3));
    expect(await b.readEvents('gen1', 5, 0)).toEqual([]);
  });

  it('logs events asked for together (many replies in one turn) each in its own log, refusing repeats', async () => {
    const pair = await backend.pair();
    if (!pair) return;
    const [a, b] = pair;
    // Three replies interleaved as running generations ask, and one position asked twice.
    const asked: Array<Promise<boolean>> = [];
    for (let i = 1; i <= 4; i++) for (const gen of ['batch-a', 'batch-b', 'batch-c']) asked.push(a.appendEvent(gen, i, delta(i)));
    asked.push(a.appendEvent('batch-b', 2, delta(42)));
    const added = await Promise.all(asked);
    expect(added.slice(0, 12).every(Boolean)).toBe(true);
    expect(added[12]).toBe(false);
    for (const gen of ['batch-a', 'batch-b', 'batch-c']) {
      expect(await b.readEvents(gen, 0, 0)).toEqual([1, 2, 3, 4].map((seq) => ({ seq, event: delta(seq) })));
    }
  });

  it('wakes a waiting reader when an event arrives, and returns empty on timeout or abort', async () => {
    const pair = await backend.pair();
    if (!pair) return;
    const [a, b] = pair;
    const waiting = b.readEvents('gen2', 0, 10_000);
    await a.appendEvent('gen2', 1, delta(1));
    expect((await waiting).map((e) => e.seq)).toEqual([1]);
    expect(await b.readEvents('gen2', 1, 30)).toEqual([]);
    const controller = new AbortController();
    const aborted = b.readEvents('gen2', 1, 10_000, controller.signal);
    controller.abort();
    expect(await aborted).toEqual([]);
  });

  it('forgets a finished log after its time to live', async () => {
    const pair = await backend.pair();
    if (!pair) return;
    const [a, b] = pair;
    await a.saveGeneration({ id: 'gen3', owner: 'o', sessionId: 's', sessionKey: 'o/s', stored: true }, 60_000);
    await a.appendEvent('gen3', 1, delta(1));
    await a.expireGeneration('gen3', 50);
    await vi.waitFor(async () => {
      expect(await b.loadGeneration('gen3')).toBeUndefined();
      expect(await b.readEvents('gen3', 0, 0)).toEqual([]);
    });
  });

  it('tracks liveness and listeners with expiry', async () => {
    const pair = await backend.pair();
    if (!pair) return;
    const [a, b] = pair;
    expect(await b.isAlive('gen4')).toBe(false);
    await a.markAlive('gen4', 10_000);
    expect(await b.isAlive('gen4')).toBe(true);
    await a.clearAlive('gen4');
    expect(await b.isAlive('gen4')).toBe(false);
    await a.markAlive('gen4', 50);
    await vi.waitFor(async () => expect(await b.isAlive('gen4')).toBe(false));

    await a.touchListener('gen4', 'l1', 10_000);
    await a.touchListener('gen4', 'l2', 50);
    expect(await b.countListeners('gen4')).toBeGreaterThanOrEqual(1);
    await vi.waitFor(async () => expect(await b.countListeners('gen4')).toBe(1));
    await a.dropListener('gen4', 'l1');
    expect(await b.countListeners('gen4')).toBe(0);
  });

  it('delivers cancel signals to every instance', async () => {
    const pair = await backend.pair();
    if (!pair) return;
    const [a, b] = pair;
    const seen: string[] = [];
    const unsubscribe = b.onCancel((id) => seen.push(id));
    await vi.waitFor(async () => {
      await a.publishCancel('gen5');
      expect(seen).toContain('gen5');
    });
    unsubscribe();
    const before = seen.length;
    await a.publishCancel('gen6');
    expect(seen.length).toBe(before);
  });
});
