import postgres from 'postgres';
import { describe, expect, it } from 'vitest';
import { startPostgres } from './helpers/postgres.ts';
import { startServer } from './helpers/server.ts';
import { drain, streamSseRoute } from './helpers/sse.ts';

// `/ready` is what a load balancer or an orchestrator asks before sending requests. While writes
// fail, SqlHistory.healthy() tries a write "(a lock held elsewhere, a full disk)": but its probe
// writes `history_migrations`, a table no turn writes, so a lock on the tables turns do write
// leaves it succeeding, and its success even clears the "writes are failing" mark.

const turn = (url: string, session: string): Promise<Response> =>
  fetch(`${url}/v1/chat/stream`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ message: 'hi', session_id: session }),
  });

describe("PostgreSQL: readiness while an administrator's transaction locks Sluice's tables", () => {
  it('says not ready while every turn is refused 503 behind the lock (a CREATE INDEX without CONCURRENTLY takes this SHARE lock), and ready once it is gone', async () => {
    const pg = await startPostgres();
    if (!pg) return;
    const url = await pg.createDatabase();
    const server = await startServer({ DATABASE_URL: url });
    await drain(streamSseRoute(server.url, { message: 'before', session_id: 'warm' }));
    expect((await fetch(`${server.url}/ready`)).status).toBe(200);

    const admin = postgres(url, { max: 1, onnotice: () => undefined });
    let locked!: () => void;
    const taken = new Promise<void>((resolve) => (locked = resolve));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const holding = admin.begin(async (tx) => {
      await tx`LOCK TABLE history_messages IN SHARE MODE`;
      locked();
      await released;
    });
    try {
      await taken;
      // Turns wait for the lock until the statement timeout, and are refused.
      const refused = await turn(server.url, 'during');
      expect(refused.status).toBe(503);
      await refused.text();
      // Writes fail: the instance cannot take a turn, and should say so.
      const ready = await fetch(`${server.url}/ready`);
      expect(ready.status, 'GET /ready while every turn is refused').toBe(503);
    } finally {
      release();
      await holding;
      await admin.end({ timeout: 1 });
    }
    const after = await turn(server.url, 'after');
    expect(after.status).toBe(200);
    await after.text();
    expect((await fetch(`${server.url}/ready`)).status).toBe(200);
  }, 60_000);
});
