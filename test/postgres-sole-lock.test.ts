import { pino } from 'pino';
import postgres from 'postgres';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { PostgresSoleLock } from '../server/core/store/history/postgres-sole-lock.ts';
import { postgresTarget } from '../server/core/store/history/postgres-url.ts';
import { startPostgres } from './helpers/postgres.ts';

const logger = pino({ level: 'silent' });
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

describe('the sole-instance lock of PostgreSQL without Redis', () => {
  it('is taken back at once when its connection goes, so that an instance starting then does not take its running replies for a crash', async () => {
    const server = await startPostgres();
    if (!server) return;
    const url = await server.createDatabase();
    const admin = postgres(url, { max: 1, onnotice: () => undefined });
    cleanups.push(() => admin.end({ timeout: 1 }));
    const lock = await PostgresSoleLock.take(postgresTarget(url), logger);
    cleanups.push(() => lock.close());
    expect(lock.heldAtStart).toBe(true);
    const held = async (): Promise<boolean> => {
      const [row] = await admin<Array<{ n: number }>>`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND granted`;
      return row!.n > 0;
    };
    expect(await held()).toBe(true);

    // Its connection cut from PostgreSQL's side (an operator's pg_terminate_backend, a pooler, a
    // network blip): the lock goes with it. A new instance starting in the gap would hold the lock
    // and end this one's running replies as a crash's.
    const cutAt = performance.now();
    await admin`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'sluice-sole-instance'`;
    await vi.waitFor(async () => expect(await held()).toBe(true), { timeout: 5000, interval: 20 });
    expect(performance.now() - cutAt).toBeLessThan(1000);
    const second = await PostgresSoleLock.take(postgresTarget(url), logger);
    cleanups.push(() => second.close());
    expect(second.heldAtStart).toBe(false);
  });
});
