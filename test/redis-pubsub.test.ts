import { pino } from 'pino';
import { afterEach, expect, it, vi } from 'vitest';
import { RedisConnection } from '../server/core/store/redis/connection.ts';
import { RedisSignals } from '../server/core/store/signals/redis.ts';
import { startRedis } from './helpers/redis.ts';

const logger = pino({ level: 'silent' });
const opened: RedisConnection[] = [];
afterEach(async () => {
  for (const connection of opened.splice(0)) await connection.close();
});

// An instance that starts while Redis is away (a deploy racing Redis's own restart) subscribes to
// cancels once Redis is there: otherwise no cancel asked on another instance ever reaches its
// replies by message (each would wait for the catch-up that only a reconnect brings).
it('an instance started while Redis is down gets the cancels of other instances once it is up', async () => {
  const redis = await startRedis();
  if (!redis) return;
  await redis.stop();
  const a = new RedisConnection({ url: redis.url, logger, prefix: 'pubsub:' });
  opened.push(a);
  const seen: string[] = [];
  new RedisSignals(a).onCancel((id) => seen.push(id));
  // Let A's first connection attempts fail.
  expect(await a.ready(500)).toBe(false);
  await redis.start();
  expect(await a.ready(10_000)).toBe(true);
  const b = new RedisConnection({ url: redis.url, logger, prefix: 'pubsub:' });
  opened.push(b);
  expect(await b.ready(10_000)).toBe(true);
  const signals = new RedisSignals(b);
  let n = 0;
  await vi.waitFor(
    async () => {
      expect(await signals.requestCancel(`gen-${++n}`, 60_000)).toBe(true);
      expect(seen.length).toBeGreaterThan(0);
    },
    { timeout: 10_000, interval: 200 },
  );
});
