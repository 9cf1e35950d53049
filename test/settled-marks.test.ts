import { Redis } from 'ioredis';
import { expect, it } from 'vitest';
import { startRedis } from './helpers/redis.ts';
import { startServer } from './helpers/server.ts';
import { drain, streamSseRoute } from './helpers/sse.ts';

// A reply settles its outcome in the shared state, so that a cancel racing its end answers the
// truth. Once its session lock is released no cancel reaches that mark, so it lasts the resume
// window (EVENT_LOG_TTL_MS, at least a minute): kept for a day, a server's Redis held one key per
// reply of the last 24 hours (and the memory store a map entry each).
it('a finished reply leaves its settled mark for the resume window, not for a day', async () => {
  const redis = await startRedis();
  if (!redis) return;
  const { url } = await startServer({ REDIS_URL: redis.url, EVENT_LOG_TTL_MS: 60_000 });
  const frames = await drain(streamSseRoute(url, { message: 'settle me', session_id: 's' }));
  expect(frames.at(-1)?.data).toContain('"done": true');
  const client = new Redis(redis.url);
  try {
    const marks = (await client.keys('*')).filter((key) => key.includes(':cx:'));
    expect(marks).toHaveLength(1);
    const ttl = await client.pttl(marks[0]!);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(60_000);
  } finally {
    client.disconnect();
  }
});
