import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startServer } from './child-server.ts';
import { freePort } from './redis.ts';
import { processCpuMicros } from './proc-stats.ts';
import { median, percentile } from './stats.ts';

// `npm run bench:replica-wait`: what waiting for a replica costs (REDIS_WAIT_REPLICAS=1: the
// writes that start and end a turn wait for WAIT). A primary and a replica on this machine, and
// three sentinels; Sluice (compiled, as `npm start` runs it) on the primary's URL and through the
// sentinels, without and with the wait. Per configuration: turns one after another (the latency a
// client sees: to the first event, to the end), then 32 at once (turns a second, CPU of Sluice
// and of the primary per turn). History is in Redis, so a turn has four waits: the reply's record
// at start, the user's message, the reply's message, its last event.

const SEQUENTIAL = Number(process.env.BENCH_TURNS ?? 400);
const CONCURRENT = Number(process.env.BENCH_CONCURRENT_TURNS ?? 2000);
const USERS = 32;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

const children: ChildProcess[] = [];
process.once('exit', () => children.forEach((c) => c.kill('SIGKILL')));

async function redisServer(args: string[], ready = 'Ready to accept connections'): Promise<void> {
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'ignore'] });
  children.push(child);
  let out = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes(ready)) resolve();
    });
    child.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${out}`)));
  });
  child.stdout.resume();
}

async function until(check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await check().catch(() => false)) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error('timed out');
}

/** One turn on a new session: milliseconds to the first event and to the end. */
async function turn(url: string, n: number): Promise<{ first: number; end: number }> {
  const started = performance.now();
  const res = await fetch(`${url}/v1/chat/stream`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ message: 'measure me', session_id: `w-${n}` }),
  });
  if (res.status !== 200 || !res.body) throw new Error(`status ${res.status}`);
  let first: number | undefined;
  let text = '';
  const decoder = new TextDecoder();
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    first ??= performance.now() - started;
    text += decoder.decode(value, { stream: true });
  }
  if (!/"done": ?true/.test(text)) throw new Error('the reply did not complete');
  return { first: first!, end: performance.now() - started };
}

async function main(): Promise<void> {
  const [primaryPort, replicaPort, ...sentinelPorts] = await Promise.all(Array.from({ length: 5 }, freePort));
  const plain = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
  await redisServer(['--port', String(primaryPort), ...plain]);
  await redisServer(['--port', String(replicaPort), ...plain, '--replicaof', '127.0.0.1', String(primaryPort)]);
  const primary = new Redis({ port: primaryPort });
  await until(async () => (await primary.info('replication')).includes('connected_slaves:1'));
  for (const port of sentinelPorts) {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-sentinel-'));
    const file = join(dir, 'sentinel.conf');
    writeFileSync(file, `port ${port}\nbind 127.0.0.1\ndir ${dir}\nsentinel monitor bench 127.0.0.1 ${primaryPort} 2\n`);
    await redisServer([file, '--sentinel'], 'Sentinel ID is');
  }
  const primaryCpu = async (): Promise<number> => {
    const info = await primary.info('cpu');
    return (Number(/used_cpu_user:([\d.]+)/.exec(info)![1]) + Number(/used_cpu_sys:([\d.]+)/.exec(info)![1])) * 1e6;
  };

  const configurations: Array<{ name: string; env: Record<string, string> }> = [
    { name: 'one Redis (REDIS_URL), replica attached', env: { REDIS_URL: `redis://127.0.0.1:${primaryPort}` } },
    { name: 'Sentinel', env: { REDIS_SENTINELS: sentinelPorts.map((p) => `127.0.0.1:${p}`).join(','), REDIS_SENTINEL_MASTER: 'bench' } },
  ];
  // Each configuration in turn, then again, three rounds: this machine's other load moves the
  // figures, and the median of the rounds is less at its mercy than one run.
  interface Run {
    readonly first50: number;
    readonly first99: number;
    readonly end50: number;
    readonly end99: number;
    readonly perSecond: number;
    readonly cpu: number;
    readonly redisCpu: number;
  }
  const runs = new Map<string, Run[]>();
  for (let round = 0; round < ROUNDS; round++) {
    for (const { name, env } of configurations) {
      for (const wait of [0, 1]) {
        const server = await startServer({ entry: 'server/main.ts', env: { ...env, STORE: 'redis', REDIS_WAIT_REPLICAS: String(wait), SIM_DELAY_MS: '0' } });
        try {
          let n = 0;
          for (let i = 0; i < 50; i++) await turn(server.url, n++); // warm-up
          const firsts: number[] = [];
          const ends: number[] = [];
          for (let i = 0; i < SEQUENTIAL; i++) {
            const { first, end } = await turn(server.url, n++);
            firsts.push(first);
            ends.push(end);
          }
          const cpuBefore = processCpuMicros(server.pid);
          const redisBefore = await primaryCpu();
          const started = performance.now();
          let left = CONCURRENT;
          await Promise.all(
            Array.from({ length: USERS }, async () => {
              while (left-- > 0) await turn(server.url, n++);
            }),
          );
          const run: Run = {
            first50: percentile(firsts, 50)!,
            first99: percentile(firsts, 99)!,
            end50: percentile(ends, 50)!,
            end99: percentile(ends, 99)!,
            perSecond: CONCURRENT / ((performance.now() - started) / 1000),
            cpu: (processCpuMicros(server.pid) - cpuBefore) / CONCURRENT,
            redisCpu: ((await primaryCpu()) - redisBefore) / CONCURRENT,
          };
          const key = `${name}|${wait}`;
          runs.set(key, [...(runs.get(key) ?? []), run]);
          console.log(`round ${round + 1}: ${key}: ${JSON.stringify(run)}`);
        } finally {
          await server.stop();
        }
      }
    }
  }
  const rows: string[] = [];
  for (const [key, list] of runs) {
    const [name, wait] = key.split('|');
    const m = (pick: (run: Run) => number, digits = 2): string => median(list.map(pick))!.toFixed(digits);
    rows.push(
      `| ${name} | ${wait} | ${m((r) => r.first50)} / ${m((r) => r.first99)} | ${m((r) => r.end50)} / ${m((r) => r.end99)} | ${m((r) => r.perSecond, 0)} | ${m((r) => r.cpu, 0)} | ${m((r) => r.redisCpu, 0)} |`,
    );
  }
  console.log(
    [
      '',
      `Turns on a new session each (39 deltas, SIM_DELAY_MS=0, history in Redis); ${SEQUENTIAL} one after another, then ${CONCURRENT} by ${USERS} users at once; the median of ${ROUNDS} rounds.`,
      '',
      '| store | REDIS_WAIT_REPLICAS | first event p50 / p99 (ms) | whole turn p50 / p99 (ms) | turns/s (32 at once) | Sluice CPU per turn (µs) | primary CPU per turn (µs) |',
      '| --- | --- | --- | --- | --- | --- | --- |',
      ...rows,
    ].join('\n'),
  );
  primary.disconnect();
}

await main();
process.exit(0);
