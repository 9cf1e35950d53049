import { Redis } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { RedisConnection } from '../server/core/store/redis/connection.ts';
import { captureLogs } from './helpers/logs.ts';
import { startRedis } from './helpers/redis.ts';
import { startReplicated } from './helpers/redis-topologies.ts';

// Writes that must outlive a failover (a turn's record, its messages, its ending) wait for a
// replica to have them (WAIT), when REDIS_WAIT_REPLICAS asks for it (by default under Sentinel).

const closing: Array<{ close(): unknown }> = [];
afterEach(async () => {
  for (const c of closing.splice(0)) await c.close();
});

function admin(port: number): Redis {
  const client = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 0 });
  client.on('error', () => undefined);
  closing.push({ close: () => client.disconnect() });
  return client;
}

describe('writes that wait for replicas', () => {
  it('is done only once the replica has it: a write waits while the replica is stopped, and is on it when done', async () => {
    const setup = await startReplicated();
    if (!setup) return;
    const { logger } = captureLogs('warn');
    const connection = new RedisConnection({ url: `redis://127.0.0.1:${setup.primary.port}`, logger, waitReplicas: 1, waitTimeoutMs: 20_000 });
    closing.push(connection);
    expect(await connection.ready(5_000)).toBe(true);
    const primary = admin(setup.primary.port);
    const replica = admin(setup.replica.port);
    // A first write: the replica is there.
    await connection.write((redis) => redis.set('sluice:first', '1'), true);
    expect(await replica.get('sluice:first')).toBe('1');

    setup.replica.child.kill('SIGSTOP');
    let done = false;
    const write = connection.write((redis) => redis.set('sluice:second', '2'), true).then(() => (done = true));
    // The primary holds the WAIT (a blocked client) for as long as the replica does not answer.
    await vi.waitFor(async () => expect(await primary.info('clients')).toMatch(/blocked_clients:1/));
    expect(done).toBe(false);
    setup.replica.child.kill('SIGCONT');
    await write;
    expect(await replica.get('sluice:second')).toBe('2');
  });

  it('with no replica connected, writes go on without waiting, with one warning', async () => {
    const redis = await startRedis();
    if (!redis) return;
    const { logger, lines } = captureLogs('warn');
    // Were it to wait, each write would take a minute (the test's own timeout fails first).
    const connection = new RedisConnection({ url: redis.url, logger, waitReplicas: 1, waitTimeoutMs: 60_000 });
    closing.push(connection);
    expect(await connection.ready(5_000)).toBe(true);
    for (let i = 0; i < 3; i++) await connection.write((r) => r.set(`sluice:lone-${i}`, 'x'), true);
    expect(lines.filter((l) => String(l.msg).startsWith('Redis replicas are missing or late'))).toHaveLength(1);
  });
});
