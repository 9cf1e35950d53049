import { Redis } from 'ioredis';
import { describe, expect, it, vi } from 'vitest';
import { SessionHistory } from '../shared/index.ts';
import { startPostgres } from './helpers/postgres.ts';
import { startRedis } from './helpers/redis.ts';
import { expectTimersBackTo, startServer, timerCount, type TestServer } from './helpers/server.ts';
import { openSseRoute, untilReady } from './helpers/sse.ts';

// Two instances on one real Redis (history in PostgreSQL), 300 replies whose clients drop at random
// points and resume on the other instance, while Redis client connections are killed and Redis is
// restarted once. Afterwards: every stream complete and in order, or ended with an explicit error;
// no index missing or repeated; one assistant message per user message; nothing left running.

const REPLIES = 300;
const AT_ONCE = 25;
const FRAMES_PER_STRIKE = 1000;

interface Outcome {
  readonly indices: number[];
  readonly ending: 'done' | 'error' | 'refused';
  readonly totalChunks?: number;
}

/** Frames the clients have read so far: the chaos strikes at a pace of the clients' progress. */
interface Progress {
  frames: number;
}

/** A client that reads one reply, dropping and resuming on the other instance up to three times. */
async function client(servers: readonly TestServer[], session: string, random: () => number, progress: Progress): Promise<Outcome> {
  const indices: number[] = [];
  let lastId: string | undefined;
  let ending: Outcome['ending'] | undefined;
  let totalChunks: number | undefined;
  let at = Math.floor(random() * 2);
  let unavailable = 0;
  for (let attempt = 0; attempt < 8 && !ending; attempt++) {
    const server = servers[at % 2]!;
    at++;
    // Drop after a random number of frames, on the first tries only.
    const dropAfter = attempt < 3 ? 1 + Math.floor(random() * 40) : Number.POSITIVE_INFINITY;
    let seen = 0;
    const headers: Record<string, string> = lastId ? { 'last-event-id': lastId } : {};
    const stream = openSseRoute(server.url, { message: 'chaos '.repeat(3).trim(), session_id: session }, headers, (frame) => {
      progress.frames++;
      if (ending) return;
      lastId = frame.id ?? lastId;
      if (frame.event === 'error') {
        ending = 'error';
        return;
      }
      const data = JSON.parse(frame.data) as { chunk_index?: number; done: boolean; total_chunks?: number };
      if (data.done) {
        ending = 'done';
        totalChunks = data.total_chunks;
      } else indices.push(data.chunk_index!);
      if (++seen >= dropAfter && !ending) stream.cut();
    });
    const status = await stream.done;
    // 503 while Redis is away: a client tries again once the instance is ready, as Retry-After says.
    if (status === 503 && unavailable++ < 20) {
      attempt--;
      await untilReady(server.url, 15_000);
      continue;
    }
    // Refused before any stream (the log expired, the session busy): an explicit answer.
    if (status !== 200 && status !== 0 && !ending) ending = 'refused';
    if (status === 0 && attempt >= 7) ending = 'refused';
  }
  return { indices, ending: ending ?? 'refused', ...(totalChunks === undefined ? {} : { totalChunks }) };
}

describe('chaos', () => {
  it('300 replies dropped and resumed across two instances while Redis connections die and Redis restarts', { timeout: 120_000 }, async () => {
    const [redis, pg] = await Promise.all([startRedis({ persistent: true }), startPostgres()]);
    if (!redis || !pg) return;
    const DATABASE_URL = await pg.createDatabase();
    const timersBefore = timerCount();
    const env = {
      REDIS_URL: redis.url,
      DATABASE_URL,
      SIM_DELAY_MS: 4,
      RESUME_GRACE_MS: 2000,
      LIVENESS_TTL_MS: 1500,
    };
    const servers = [await startServer(env), await startServer(env)];
    const admin = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    admin.on('error', () => undefined);

    // A seeded generator: a failure can be replayed.
    let seed = 42;
    const random = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000;

    let stopChaos = false;
    let restarted = false;
    const progress: Progress = { frames: 0 };
    const chaos = (async () => {
      for (let round = 0; !stopChaos; round++) {
        // A strike every 1,000 frames the clients read (about a third of a second here), so that
        // each one lands among replies in flight however fast the machine runs them.
        const mark = progress.frames + FRAMES_PER_STRIKE;
        await vi.waitFor(() => expect(stopChaos || progress.frames >= mark).toBe(true), { timeout: 60_000, interval: 20 });
        if (stopChaos) break;
        try {
          if (round === 6 && !restarted) {
            restarted = true;
            await redis.restart();
          } else {
            // One of the instances' connections at a time: a command connection, a subscriber or a tail.
            const ids = ((await admin.call('CLIENT', 'LIST')) as string)
              .split('\n')
              .filter((line) => /name=sluice-/.test(line))
              .map((line) => /\bid=(\d+)/.exec(line)![1]!);
            const victim = ids[Math.floor(random() * ids.length)];
            if (victim) await admin.call('CLIENT', 'KILL', 'ID', victim);
          }
        } catch {
          // Redis is restarting: the next round tries again.
        }
      }
    })();

    const outcomes: Outcome[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: AT_ONCE }, async () => {
        while (next < REPLIES) {
          const n = next++;
          outcomes[n] = await client(servers, `chaos-${n}`, random, progress);
        }
      }),
    );
    stopChaos = true;
    await chaos;
    expect(restarted).toBe(true);

    for (const [n, outcome] of outcomes.entries()) {
      // In order, from 1, each index once, whatever the drops and resumes.
      expect(outcome.indices, `reply ${n}`).toEqual(outcome.indices.map((_, i) => i + 1));
      if (outcome.ending === 'done') expect(outcome.totalChunks, `reply ${n}`).toBe(outcome.indices.length);
    }
    const completed = outcomes.filter((o) => o.ending === 'done').length;
    expect(completed).toBeGreaterThan(REPLIES / 2);

    // Every user message has exactly one reply, right after it.
    await vi.waitFor(
      async () => {
        for (const server of servers) {
          expect(server.sluice.service.runningCount).toBe(0);
          expect(server.sluice.service.openListeners).toBe(0);
        }
      },
      { timeout: 20_000 },
    );
    for (let n = 0; n < REPLIES; n++) {
      // Through the service itself: an HTTP client's keep-alive timers would outlive the test.
      const history = SessionHistory.parse(await servers[0]!.sluice.service.history('anonymous', `chaos-${n}`));
      const roles = history.messages.map((m) => m.role);
      expect(roles.length % 2, `session ${n}: ${roles.join(',')}`).toBe(0);
      expect(roles, `session ${n}`).toEqual(roles.map((_, i) => (i % 2 === 0 ? 'user' : 'assistant')));
    }

    // Nothing left: connections back to each instance's own (main, subscriber, tail), timers gone.
    await Promise.all(servers.map((s) => s.close()));
    await vi.waitFor(async () => {
      const clients = ((await admin.call('CLIENT', 'LIST')) as string).split('\n').filter((line) => /name=sluice-/.test(line));
      expect(clients).toEqual([]);
    });
    admin.disconnect();
    await expectTimersBackTo(timersBefore);
  });
});
