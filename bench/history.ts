/**
 * Measures a History store: write throughput under many conversations at once, the cost of one
 * write awaited alone, and read latency. The figures in docs/stores.md come from here.
 *
 *   node --import tsx bench/history.ts [sqlite|memory|postgres=<url>]...   (default: sqlite memory)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { pino } from 'pino';
import type { History } from '../server/core/store/history.ts';
import { MemoryHistory } from '../server/core/store/history/memory.ts';
import { PostgresHistory } from '../server/core/store/history/postgres.ts';
import { SqliteHistory } from '../server/core/store/history/sqlite.ts';
import type { ChatMessage } from '../shared/messages.ts';

const logger = pino({ level: 'warn' });
const CONVERSATIONS = 1000;
const ROUNDS = 3;
const CHECKPOINTS = 5;
const CHUNK = 'lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incid '.repeat(2);

async function open(spec: string): Promise<{ history: History; cleanup: () => void }> {
  if (spec === 'memory') return { history: new MemoryHistory(), cleanup: () => undefined };
  if (spec === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-history-'));
    const history = await SqliteHistory.open({ path: join(dir, 'history.db'), logger });
    return { history, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
  }
  if (spec.startsWith('postgres=')) return { history: await PostgresHistory.open({ url: spec.slice('postgres='.length), logger }), cleanup: () => undefined };
  throw new Error(`unknown store "${spec}": sqlite, memory or postgres=<url>`);
}

const message = (role: ChatMessage['role'], content: string): ChatMessage => ({ role, content, status: 'complete', createdAt: new Date().toISOString() });

/** Every conversation at once: per round a user message, checkpoints of a growing reply, the final reply. */
async function turns(
  history: History,
  run: string,
): Promise<{ writesPerSecond: number; cpuPerWriteUs: number; loopDelayP99Ms: number; loopDelayMaxMs: number }> {
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  const started = performance.now();
  const cpu = process.cpuUsage();
  await Promise.all(
    Array.from({ length: CONVERSATIONS }, async (_, c) => {
      const key = `${run}/bench/${c}`;
      for (let r = 0; r < ROUNDS; r++) {
        await history.append(key, message('user', `question ${r}`), { keepLast: 1000 });
        let text = '';
        for (let k = 0; k < CHECKPOINTS; k++) {
          text += CHUNK;
          await history.checkpoint(key, `reply-${r}`, text);
        }
        await history.append(key, message('assistant', text + CHUNK), { keepLast: 1000, replyId: `reply-${r}` });
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const writes = CONVERSATIONS * ROUNDS * (CHECKPOINTS + 2);
  delay.disable();
  return {
    writesPerSecond: Math.round(writes / seconds),
    cpuPerWriteUs: cpuUs(cpu, writes),
    loopDelayP99Ms: round(delay.percentile(99) / 1e6),
    loopDelayMaxMs: round(delay.max / 1e6),
  };
}

/** One append at a time, each awaited: what a write costs when nothing shares its transaction. */
async function alone(history: History, run: string): Promise<{ appendMs: number; cpuPerAppendUs: number }> {
  const n = 1000;
  const started = performance.now();
  const cpu = process.cpuUsage();
  for (let i = 0; i < n; i++) await history.append(`${run}/alone`, message('user', CHUNK), { keepLast: 1000 });
  return { appendMs: round((performance.now() - started) / n), cpuPerAppendUs: cpuUs(cpu, n) };
}

/** A session of 1000 messages: the newest 50 (a page), and the whole of it. */
async function reads(history: History, run: string): Promise<{ page50P50Ms: number; page50P99Ms: number; cpuPerPage50Us: number; all1000P50Ms: number }> {
  const key = `${run}/long`;
  await Promise.all(Array.from({ length: 1000 }, (_, i) => history.append(key, message(i % 2 ? 'assistant' : 'user', CHUNK.repeat(3)), { keepLast: 1000 })));
  const time = async (times: number, options: { limit?: number }): Promise<number[]> => {
    const out: number[] = [];
    for (let i = 0; i < times; i++) {
      const started = performance.now();
      await history.read(key, options);
      out.push(performance.now() - started);
    }
    return out.sort((a, b) => a - b);
  };
  const cpu = process.cpuUsage();
  const page = await time(2000, { limit: 50 });
  const cpuPerPage50Us = cpuUs(cpu, 2000);
  const all = await time(200, {});
  return { page50P50Ms: round(page[1000]!), page50P99Ms: round(page[1980]!), cpuPerPage50Us, all1000P50Ms: round(all[100]!) };
}

const round = (n: number): number => Math.round(n * 1000) / 1000;
/** CPU time (user and system) since `since`, per operation, in µs: steadier than wall time on a busy machine. */
const cpuUs = (since: NodeJS.CpuUsage, operations: number): number => {
  const { user, system } = process.cpuUsage(since);
  return Math.round(((user + system) / operations) * 10) / 10;
};

const specs = process.argv.slice(2);
for (const spec of specs.length > 0 ? specs : ['sqlite', 'memory']) {
  const { history, cleanup } = await open(spec);
  const run = `run${Date.now()}`;
  try {
    const result = { ...(await turns(history, run)), ...(await alone(history, run)), ...(await reads(history, run)) };
    console.log(JSON.stringify({ store: spec.replace(/=.*/, ''), ...result }));
  } finally {
    await history.close();
    cleanup();
  }
}
