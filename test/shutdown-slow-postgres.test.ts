import postgres from 'postgres';
import { describe, expect, it } from 'vitest';
import { startPostgres } from './helpers/postgres.ts';
import { startServer } from './helpers/server.ts';
import { openSseRoute, type SseFrame } from './helpers/sse.ts';

// db614e9 bounds shutdown for a store that does not answer (a frozen host): past 2 s the store is
// closed under the replies still storing their partials, and PostgreSQL's queued writes are cut
// 1 s later. A PostgreSQL that is alive and answers, only slower than that (a write waiting
// 6 s on a lock, well within the statement timeout, 10 s), now loses the reply's last write on
// an ordinary SIGTERM: the stopped reply stays a draft, its final text gone.

/** How long the administrator's lock holds up the writes: slower than the grace, within the statement timeout. */
const SLOW_WRITE_MS = 6000;

describe('shutdown while PostgreSQL is slow but answering', () => {
  it('a reply stopped by the shutdown still stores its partial (it is not left a draft)', async () => {
    const pg = await startPostgres();
    if (!pg) return;
    const url = await pg.createDatabase();
    const server = await startServer({ DATABASE_URL: url, SIM_DELAY_MS: 20 });
    const frames: SseFrame[] = [];
    let sawThree!: () => void;
    const three = new Promise<void>((resolve) => (sawThree = resolve));
    const stream = openSseRoute(server.url, { message: 'long '.repeat(100), session_id: 'slow-pg' }, {}, (frame) => {
      frames.push(frame);
      if (frames.length === 3) sawThree();
    });
    await three;

    const admin = postgres(url, { max: 2, onnotice: () => undefined });
    let locked!: () => void;
    const taken = new Promise<void>((resolve) => (locked = resolve));
    const holding = admin.begin(async (tx) => {
      await tx`LOCK TABLE history_messages IN SHARE MODE`;
      locked();
      // The slow store: the lock goes after SLOW_WRITE_MS (a scenario's duration, not a wait for an event).
      await new Promise((resolve) => setTimeout(resolve, SLOW_WRITE_MS));
    });
    try {
      await taken;
      await server.close();
      await stream.done;
      await holding;
      const rows = await admin<{ role: string; status: string }[]>`
        SELECT role, status FROM history_messages WHERE session_key LIKE ${'%/slow-pg'} ORDER BY seq`;
      expect(rows.map((r) => [r.role, r.status])).toEqual([
        ['user', 'complete'],
        ['assistant', 'interrupted'],
      ]);
    } finally {
      await holding.catch(() => undefined);
      await admin.end({ timeout: 1 });
    }
  }, 60_000);
});
