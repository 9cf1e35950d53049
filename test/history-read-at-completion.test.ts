import { describe, expect, it } from 'vitest';
import { startPostgres } from './helpers/postgres.ts';
import { startServer } from './helpers/server.ts';
import { drain, history, streamSseRoute } from './helpers/sse.ts';

// ChatService.history() reads the stored rows, then asks, for a draft among them, whether its reply
// still runs (its Generation here, else its liveness mark) to leave it out. The two are not one
// step: a read that took the draft just before the reply's final message was written, and asks
// once the reply has ended and let its mark go, shows the draft as a finished reply, `interrupted`,
// with the text of its last checkpoint, for a reply that completed (its client gets `done`).
// (The same probe against the default SQLite store and against Redis history finds nothing.)

const TURNS = 80;

async function racingReads(url: string, prefix: string): Promise<string[]> {
  const seen: string[] = [];
  for (let turn = 0; turn < TURNS; turn++) {
    const session = `${prefix}${turn}`;
    let over = false;
    const reply = drain(streamSseRoute(url, { message: 'hi', session_id: session })).finally(() => (over = true));
    // A page open on the session polls its history while the reply runs (four tabs).
    const readers = Array.from({ length: 4 }, async () => {
      while (!over) {
        const { messages } = await history(url, session);
        const shown = messages.map((m) => `${m.role}:${m.status}:${JSON.stringify(m.content.slice(0, 12))}`).join(',');
        if (messages.some((m) => m.status === 'interrupted')) seen.push(`turn ${turn}: ${shown}`);
      }
    });
    const frames = await reply;
    expect(JSON.parse(frames.at(-1)!.data)).toMatchObject({ done: true });
    await Promise.all(readers);
  }
  return seen;
}

describe('history read while a reply completes', () => {
  it('PostgreSQL: a reply that completes is never shown as interrupted to a reader racing its end', async () => {
    const pg = await startPostgres();
    if (!pg) return;
    const { url } = await startServer({ DATABASE_URL: await pg.createDatabase(), SIM_DELAY_MS: 1 });
    expect(await racingReads(url, 'pg')).toEqual([]);
  }, 60_000);
});
