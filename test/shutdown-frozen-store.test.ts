import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { startPostgres } from './helpers/postgres.ts';
import { startSluiceProcess, type SluiceProcess } from './helpers/process.ts';
import { startRedis } from './helpers/redis.ts';
import { openSseRoute, type OpenSseRoute, type SseFrame } from './helpers/sse.ts';

/** SHUTDOWN_DRAIN_MS in these tests. */
const DRAIN_MS = 1000;
/**
 * How long after SIGTERM the process may take at most: the drain, the HTTP close grace (2 s), and
 * the stores' own timeouts (a Redis command's 1 s and its retries for ~1.75 s, PostgreSQL's 5 s
 * connect and close timeouts), with room to spare. What it must not do is wait for the store.
 */
const EXIT_BOUND_MS = DRAIN_MS + 2000 + 5000 + 4000;

/** A reply streamed over the SSE route, once its first two frames have come. */
async function runningReply(sluice: SluiceProcess, session: string): Promise<{ frames: SseFrame[]; stream: OpenSseRoute }> {
  const frames: SseFrame[] = [];
  let sawTwo: () => void;
  const two = new Promise<void>((resolve) => (sawTwo = resolve));
  const stream = openSseRoute(sluice.url, { message: 'long '.repeat(100), session_id: session }, {}, (frame) => {
    frames.push(frame);
    if (frames.length === 2) sawTwo();
  });
  await two;
  return { frames, stream };
}

/** SIGTERM, then whether the process exited within EXIT_BOUND_MS (its exit code), or 'still running'. */
async function sigtermWithinBound(sluice: SluiceProcess): Promise<{ code: number | null } | 'still running'> {
  const exited = once(sluice.child, 'exit').then(([code]) => ({ code: code as number | null }));
  sluice.child.kill('SIGTERM');
  return Promise.race([exited, new Promise<'still running'>((resolve) => setTimeout(resolve, EXIT_BOUND_MS, 'still running'))]);
}

/** The pid of the redis-server listening on `port` (it names its address in its command line). */
function redisPid(port: number): number {
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const command = readFileSync(`/proc/${name}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (command.includes('redis-server') && command.includes(`:${port}`)) return Number(name);
    } catch {
      // The process has gone meanwhile.
    }
  }
  throw new Error(`no redis-server on port ${port}`);
}

describe('shutdown while the store does not answer (a hung host, a partition: connections open, silent)', () => {
  it('PostgreSQL frozen: SIGTERM ends the running reply with the error event and the process exits within the drain and a bounded grace', async () => {
    const pg = await startPostgres();
    if (!pg) return;
    const sluice = await startSluiceProcess({ DATABASE_URL: await pg.createDatabase(), SHUTDOWN_DRAIN_MS: DRAIN_MS, SIM_DELAY_MS: 20, RESUME_GRACE_MS: 0 });
    const { frames, stream } = await runningReply(sluice, 'frozen-pg');
    pg.pause();
    try {
      expect(await sigtermWithinBound(sluice)).toEqual({ code: expect.any(Number) });
      await stream.done;
      // The client is told the reply is over, not left with a stream that stops mid-sentence.
      expect(frames.at(-1)!.event).toBe('error');
    } finally {
      pg.unpause();
    }
  }, 30_000);

  it('Redis frozen: SIGTERM ends the running reply with the error event and the process exits within the drain and a bounded grace', async () => {
    const redis = await startRedis();
    if (!redis) return;
    const sluice = await startSluiceProcess({ REDIS_URL: redis.url, SHUTDOWN_DRAIN_MS: DRAIN_MS, SIM_DELAY_MS: 20, RESUME_GRACE_MS: 0 });
    const { frames, stream } = await runningReply(sluice, 'frozen-redis');
    const pid = redisPid(redis.port);
    process.kill(pid, 'SIGSTOP');
    try {
      expect(await sigtermWithinBound(sluice)).toEqual({ code: expect.any(Number) });
      await stream.done;
      expect(frames.at(-1)!.event).toBe('error');
    } finally {
      process.kill(pid, 'SIGCONT');
    }
  }, 30_000);
});
