import postgres from 'postgres';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { ChatMessage } from '../shared/messages.ts';
import { PostgresHistory } from '../server/core/store/history/postgres.ts';
import { startPostgres } from './helpers/postgres.ts';

// Two instances on one database, each batching turns into one transaction: new sessions of two
// owners, queued in opposite orders on the two, must not make the instances wait on each other's
// locks (a deadlock, found by PostgreSQL after its deadlock_timeout: a second's stall for the turns
// of both batches), while the limit on sessions still holds (from the review of the session limit).

const logger = pino({ level: 'silent' });
const message = (content: string): ChatMessage => ({ role: 'user', content, status: 'complete', createdAt: new Date().toISOString() });

describe('PostgreSQL: the limit on sessions, with two instances', () => {
  it('new sessions of two owners, queued in opposite orders on two instances: no deadlock, no stall, the limit held', async () => {
    const pg = await startPostgres();
    if (!pg) return;
    const url = await pg.createDatabase();
    const [a, b] = await Promise.all([PostgresHistory.open({ url, logger }), PostgresHistory.open({ url, logger })]);
    const sql = postgres(url, { max: 1 });
    try {
      const LIMIT = 30;
      const options = (replyId: string) => ({ keepLast: 100, replyId, maxSessions: LIMIT });
      for (const owner of ['k_x', 'k_y']) await a.begin(`${owner}/base`, message('base'), options(`base-${owner}`));
      const deadlocks = async () => Number((await sql`SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()`)[0]!.deadlocks);
      const before = await deadlocks();
      const slowest: number[] = [];
      const results: string[] = [];
      const turn = async (history: PostgresHistory, key: string, id: string): Promise<void> => {
        const started = performance.now();
        try {
          await history.begin(key, message(id), options(id));
          results.push('ok');
        } catch (error) {
          results.push((error as { reason?: string }).reason ?? String(error));
        }
        slowest.push(performance.now() - started);
      };
      for (let round = 0; round < 60; round++) {
        // Each instance's calls of one turn of the event loop are one batch: x then y on A, y then x on B.
        await Promise.all([
          turn(a, 'k_x/base', `ax${round}`),
          turn(a, `k_y/a${round}`, `ay${round}`),
          turn(a, `k_x/a${round}`, `axn${round}`),
          turn(b, 'k_y/base', `by${round}`),
          turn(b, `k_x/b${round}`, `bx${round}`),
          turn(b, `k_y/b${round}`, `byn${round}`),
        ]);
      }
      expect((await deadlocks()) - before).toBe(0);
      expect(Math.max(...slowest)).toBeLessThan(900);
      // Each owner got exactly its places: its base session and LIMIT - 1 new ones.
      expect(results.filter((r) => r === 'ok').length).toBe(2 * 60 + 2 * (LIMIT - 1));
      expect(results.filter((r) => r !== 'ok' && r !== 'too_many_sessions')).toEqual([]);
    } finally {
      await sql.end();
      await Promise.all([a.close(), b.close()]);
    }
  });
});
