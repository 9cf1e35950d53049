import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { captureLogs } from './helpers/logs.ts';
import { startSentinels, until, type SentinelSetup } from './helpers/redis-topologies.ts';
import { expectTimersBackTo, startServer, timerCount, type TestServer } from './helpers/server.ts';
import { drain, history, openSseRoute, type SseFrame, streamSseRoute, untilReady } from './helpers/sse.ts';

// Two Sluice instances on a primary, a replica and three sentinels (a primary is down after 1 s).
// The primary is killed while replies run on both instances, some of them followed or resumed on
// the other one, just after its last writes stopped reaching the replica: acknowledged writes are
// lost in the failover. Every stream stays whole and in order, or ends with an explicit error;
// history keeps one reply per turn; both instances serve new replies within seconds.

let setup: SentinelSetup | undefined;
beforeAll(async () => {
  setup = await startSentinels();
}, 60_000);
const admins: Redis[] = [];
afterAll(() => {
  for (const admin of admins) admin.disconnect();
});

function admin(port: number): Redis {
  const client = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => undefined);
  admins.push(client);
  return client;
}

interface OpenStream {
  readonly frames: SseFrame[];
  /** Settles with the response's status once the stream is over (0: no response). */
  readonly done: Promise<number>;
  /** Whether `done` has settled. */
  readonly ended: boolean;
  cut(): void;
}

/** `promise`, or an error naming what did not happen within `ms` (and `detail()` of the moment). */
async function within<T>(promise: Promise<T>, ms: number, what: string, detail?: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`waited ${ms} ms for ${what}${detail ? `: ${detail()}` : ''}`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A stream read frame by frame; `cut()` drops its connection (as a network failure would). */
function open(url: string, body: unknown, headers: Record<string, string> = {}): OpenStream {
  const frames: SseFrame[] = [];
  const route = openSseRoute(url, body, headers, (frame) => frames.push(frame));
  const stream = { frames, done: route.done, ended: false, cut: () => route.cut() };
  void stream.done.then(() => (stream.ended = true));
  return stream;
}

/** As `open`, asking again while the answer is 503 (the store is failing over), as a client told Retry-After would. */
function openRetrying(url: string, body: unknown, headers: Record<string, string>): OpenStream {
  const frames: SseFrame[] = [];
  let current: OpenStream | undefined;
  const started = performance.now();
  const done = (async () => {
    for (;;) {
      current = open(url, body, headers);
      const status = await current.done;
      frames.push(...current.frames);
      // Retried once the instance is ready again, for as long as a failover may take, not for ever.
      const left = 30_000 - (performance.now() - started);
      if (status !== 503 || left <= 0) return status;
      const ready = await untilReady(url, left).then(
        () => true,
        () => false,
      );
      if (!ready) return status;
    }
  })();
  const stream = { frames, done, ended: false, cut: () => current?.cut() };
  void done.then(() => (stream.ended = true));
  return stream;
}

interface Seen {
  readonly seqs: number[];
  readonly ending: 'done' | 'error' | 'cut';
}

/** What a stream showed: its positions in order, and how it ended. */
function seen(frames: readonly SseFrame[]): Seen {
  const seqs = frames.map((f) => Number(f.id!.split(':')[1]));
  const last = frames.at(-1);
  const ending = last?.event === 'error' ? 'error' : last && (JSON.parse(last.data) as { done: boolean }).done ? 'done' : 'cut';
  return { seqs, ending };
}

describe('Redis Sentinel', () => {
  it('two instances given REDIS_SENTINELS share one store: a turn taken on one is in the other’s history', async () => {
    if (!setup) return;
    const env = { REDIS_SENTINELS: setup.sentinels, REDIS_SENTINEL_MASTER: setup.master };
    const [a, b] = [await startServer(env), await startServer(env)];
    const frames = await drain(streamSseRoute(a.url, { message: 'hello', session_id: 'shared' }));
    expect(JSON.parse(frames.at(-1)!.data)).toMatchObject({ done: true });
    expect((await history(b.url, 'shared')).messages.map((m) => m.role)).toEqual(['user', 'assistant']);
  });

  it(
    'the primary killed mid-reply, after writes it acknowledged missed the replica: every stream whole or explicitly ended, one reply per turn, both instances serve again within seconds',
    { timeout: 90_000 },
    async () => {
      if (!setup) return;
      const { logger, lines } = captureLogs('warn');
      const timersBefore = timerCount();
      const env = {
        REDIS_SENTINELS: setup.sentinels,
        REDIS_SENTINEL_MASTER: setup.master,
        SIM_DELAY_MS: 20,
        RESUME_GRACE_MS: 15_000,
        LIVENESS_TTL_MS: 3_000,
        LOG_LEVEL: 'warn',
      };
      const servers: TestServer[] = [await startServer(env, { logger }), await startServer(env, { logger })];
      const [a, b] = servers as [TestServer, TestServer];
      const primary = admin(setup.primary.port);
      const prompt = 'fail over '.repeat(80).trim();

      // Eight replies, four on each instance; each followed from its first event on the other
      // instance; two more clients cut their stream before the failover and resume after it.
      const REPLIES = 8;
      const heads = Array.from({ length: REPLIES }, (_, i) => open(servers[i % 2]!.url, { message: prompt, session_id: `fo-${i}` }));
      await vi.waitFor(() => expect(heads.every((h) => h.frames.length >= 3)).toBe(true), { timeout: 10_000 });
      const followers = heads.map((h, i) => open(servers[(i + 1) % 2]!.url, { message: prompt, session_id: `fo-${i}` }, { 'last-event-id': h.frames[0]!.id! }));
      const cutters = [0, 1].map((i) => open(servers[i]!.url, { message: prompt, session_id: `fo-${i}` }, { 'last-event-id': heads[i]!.frames[0]!.id! }));
      await vi.waitFor(() => expect([...followers, ...cutters].every((f) => f.frames.length >= 3)).toBe(true), { timeout: 10_000 });
      for (const cutter of cutters) cutter.cut();

      // The replica stops receiving (stopped, and its link cut by the primary), the primary goes on
      // acknowledging writes for a while, then dies; the replica, back, is promoted without them.
      const shownBefore = heads.map((h) => h.frames.length);
      setup.replica.child.kill('SIGSTOP');
      await primary.call('CLIENT', 'KILL', 'TYPE', 'replica');
      await vi.waitFor(() => expect(heads.every((h, i) => h.frames.length >= shownBefore[i]! + 3)).toBe(true), { timeout: 5_000 });
      const killedAt = performance.now();
      await setup.primary.kill();
      setup.replica.child.kill('SIGCONT');

      // Both instances take new replies again (their first event is out): how long after the kill.
      const after: Array<Promise<SseFrame[]>> = [];
      const servesAgain = servers.map(async (server, i) => {
        let last: unknown;
        for (let attempt = 0; performance.now() - killedAt < 30_000; attempt++) {
          const stream = streamSseRoute(server.url, { message: 'after', session_id: `after-${i}-${attempt}` });
          const first = await within(stream.next(), 15_000, `instance ${i}'s first event of a new reply`).catch((error: unknown) => {
            last = error;
            return undefined;
          });
          if (first && !first.done) {
            const at = performance.now() - killedAt;
            after.push(drain(stream));
            return at;
          }
          // Refused (503 while there is no primary): try again once the instance says it is ready.
          await untilReady(server.url, Math.max(1, 30_000 - (performance.now() - killedAt))).catch(() => undefined);
        }
        throw new Error(`instance ${i} started no new reply within 30 s of the kill; last answer: ${String(last)}`);
      });

      await until('the sentinels to promote the replica', async () => (await setup!.primaryPort()) === setup!.replica.port, 30_000);
      const promotedAfter = performance.now() - killedAt;
      const resumed = cutters.map((cutter, i) =>
        openRetrying(servers[(i + 1) % 2]!.url, { message: prompt, session_id: `fo-${i}` }, { 'last-event-id': cutter.frames.at(-1)!.id! }),
      );
      const streams = { head: heads, follower: followers, resumed };
      await within(
        Promise.all(Object.values(streams).flatMap((list) => list.map((s) => s.done))),
        45_000,
        'every stream to end',
        () =>
          Object.entries(streams)
            .flatMap(([kind, list]) => list.map((s, i) => (s.ended ? '' : `${kind} ${i} (${s.frames.length} events)`)))
            .filter(Boolean)
            .join(', ') + ' still open',
      );
      const [readyA, readyB] = await Promise.all(servesAgain);
      console.log(
        `sentinel failover: replica promoted ${Math.round(promotedAfter)} ms after the kill; new replies start again after ${Math.round(readyA!)} ms (A), ${Math.round(readyB!)} ms (B)`,
      );
      expect(Math.max(readyA!, readyB!)).toBeLessThan(10_000);
      for (const frames of await within(Promise.all(after), 30_000, 'the replies started after the failover to end'))
        expect(JSON.parse(frames.at(-1)!.data)).toMatchObject({ done: true });

      // Acknowledged writes were lost, and the generations stored them again.
      expect(
        lines.some(
          (l) =>
            l.msg ===
            'the shared log lacked events before one it took (Redis lost them, in a failover or a restart without persistence, or their writes were still being retried); stored them again',
        ),
      ).toBe(true);

      for (let i = 0; i < REPLIES; i++) {
        const head = seen(heads[i]!.frames);
        const follower = seen(followers[i]!.frames);
        // Each stream: positions in order, each once, and an explicit ending.
        expect(head.seqs, `head ${i}`).toEqual(head.seqs.map((_, k) => k + 1));
        expect(head.ending, `head ${i}`).not.toBe('cut');
        expect(follower.seqs, `follower ${i}`).toEqual(follower.seqs.map((_, k) => k + 2));
        expect(follower.ending, `follower ${i}`).not.toBe('cut');
        // What both saw of it is the same, event for event.
        const common = Math.min(heads[i]!.frames.length, followers[i]!.frames.length + 1) - 1;
        expect(followers[i]!.frames.slice(0, common - 1).map((f) => f.data)).toEqual(heads[i]!.frames.slice(1, common).map((f) => f.data));
        if (head.ending === 'done' && follower.ending === 'done')
          expect(followers[i]!.frames.map((f) => f.data)).toEqual(heads[i]!.frames.slice(1).map((f) => f.data));
      }
      for (const [i, cutter] of cutters.entries()) {
        // Cut, then resumed elsewhere after the failover: the two parts are the reply, once.
        const whole = [...cutter.frames, ...resumed[i]!.frames];
        const parts = seen(whole);
        expect(parts.seqs, `resumed ${i}`).toEqual(parts.seqs.map((_, k) => k + 2));
        expect(parts.ending, `resumed ${i}`).not.toBe('cut');
      }
      const completed = heads.filter((h) => seen(h.frames).ending === 'done').length;
      console.log(`sentinel failover: ${completed} of ${REPLIES} replies in flight completed, the rest ended with an error event`);

      // History: one reply per turn, the same on both instances; a completed reply is what its client read.
      for (let i = 0; i < REPLIES; i++) {
        const [ha, hb] = await Promise.all([history(a.url, `fo-${i}`), history(b.url, `fo-${i}`)]);
        expect(ha).toEqual(hb);
        expect(
          ha.messages.map((m) => m.role),
          `session ${i}`,
        ).toEqual(['user', 'assistant']);
        if (seen(heads[i]!.frames).ending === 'done') {
          const text = heads[i]!.frames.map((f) => (JSON.parse(f.data) as { delta: string }).delta).join('');
          expect(ha.messages[1]).toMatchObject({ status: 'complete', content: text });
        }
      }

      // Nothing left: no generation or listener, no Sluice connection on the new primary, no timer.
      await vi.waitFor(
        () => {
          for (const server of servers) {
            expect(server.sluice.service.runningCount).toBe(0);
            expect(server.sluice.service.openListeners).toBe(0);
          }
        },
        { timeout: 20_000 },
      );
      await within(Promise.all(servers.map((s) => s.close())), 20_000, 'both instances to close');
      const promoted = admin(setup.replica.port);
      await vi.waitFor(async () => {
        const clients = ((await promoted.call('CLIENT', 'LIST')) as string).split('\n').filter((line) => /name=sluice-/.test(line));
        expect(clients).toEqual([]);
      });
      await expectTimersBackTo(timersBefore);
    },
  );
});
