import { pino } from 'pino';
import { afterEach, expect, it, vi } from 'vitest';
import { MemoryHistory } from '../server/core/store/history/memory.ts';
import { startRetention, type Retention } from '../server/core/store/history/retention.ts';
import type { ChatMessage } from '../shared/index.ts';

const DAY = 86_400_000;
const T0 = Date.parse('2026-01-01T00:00:00Z');
const logger = pino({ level: 'silent' });
const user = (content: string): ChatMessage => ({ role: 'user', content, status: 'complete', createdAt: new Date(T0).toISOString() });
let retention: Retention | undefined;
afterEach(() => retention?.stop());

it('deletes the sessions idle longer than the TTL at start, then at each sweep (clock injected)', async () => {
  const clock = { now: T0 };
  const history = new MemoryHistory({ clock: () => clock.now });
  await history.append('o/old', user('a'), { keepLast: 10 });
  clock.now = T0 + 29 * DAY;
  await history.append('o/recent', user('b'), { keepLast: 10 });
  clock.now = T0 + 30 * DAY + 1;
  // What is deleted is reported (for the metrics).
  const expired: number[] = [];
  retention = startRetention({ history, ttlMs: 30 * DAY, clock: () => clock.now, logger, onExpired: (count) => expired.push(count) });
  await vi.waitFor(async () => expect(await history.read('o/old')).toEqual([]));
  expect(await history.read('o/recent')).toHaveLength(1);
  clock.now = T0 + 59 * DAY + 1;
  expect(await retention.sweep()).toBe(1);
  expect(history.size).toBe(0);
  expect(expired).toEqual([1, 1]);
  expect(() => startRetention({ history, ttlMs: 0, logger })).toThrow(/ttlMs/);
});

it('bounds the memory store: past maxSessions, the least recently touched session goes', async () => {
  const history = new MemoryHistory({ maxSessions: 3 });
  for (const key of ['o/a', 'o/b', 'o/c']) await history.append(key, user(key), { keepLast: 10 });
  await history.checkpoint('o/a', 'r', 'touches a');
  await history.append('o/d', user('d'), { keepLast: 10 });
  expect(history.size).toBe(3);
  expect(await history.read('o/b')).toEqual([]);
  for (const key of ['o/a', 'o/c', 'o/d']) expect(await history.read(key)).not.toEqual([]);
  expect(() => new MemoryHistory({ maxSessions: 0 })).toThrow(/maxSessions/);
});
