import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { splitLoad, type LoadDriver, type LoadResult, type LoadSpec } from './load.ts';
import type { TargetName } from './targets.ts';

// The load from several event loops: when one load generator's loop is the limit (its CPU near a
// whole core: `clientCpuShare` in the results), the server under test waits for its client, and
// its figures say more about the client than about it. Each worker thread has its own client of
// the target and drives a share of the users; the load generator's CPU (process.cpuUsage) covers
// them all.

interface Reply {
  readonly id?: number;
  readonly ready?: boolean;
  readonly result?: LoadResult;
  readonly error?: string;
}

// A worker thread does not inherit the loader hooks that `--import tsx` gave this thread: it
// registers tsx's own, then imports the TypeScript entry.
const BOOT = `import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(new URL('./load-worker.ts', import.meta.url).href)}); })`;

export async function workerDriver(target: TargetName, url: string, workers: number): Promise<LoadDriver> {
  const pool = Array.from({ length: workers }, () => new Worker(BOOT, { eval: true, workerData: { target, url } }));
  const pending = new Map<number, { resolve: (r: LoadResult) => void; reject: (e: Error) => void }>();
  let nextId = 0;
  const failAll = (error: Error): void => {
    for (const p of pending.values()) p.reject(error);
    pending.clear();
  };
  const ready = pool.map(async (worker) => {
    worker.on('message', (reply: Reply) => {
      if (reply.id === undefined) return;
      const p = pending.get(reply.id);
      pending.delete(reply.id);
      if (reply.result) p?.resolve(reply.result);
      else p?.reject(new Error(`load worker: ${reply.error}`));
    });
    worker.on('error', failAll);
    const [first] = (await once(worker, 'message')) as [Reply];
    if (!first.ready) throw new Error('load worker did not start');
  });
  const close = async (): Promise<void> => {
    await Promise.all(
      pool.map(async (worker) => {
        const exited = once(worker, 'exit');
        worker.postMessage({ id: -1 });
        const timer = setTimeout(() => void worker.terminate(), 5000);
        await exited;
        clearTimeout(timer);
      }),
    );
  };
  try {
    await Promise.all(ready);
  } catch (error) {
    await Promise.all(pool.map((w) => w.terminate()));
    throw error;
  }
  return {
    run: async (spec: LoadSpec) => {
      const parts = splitLoad(spec, workers);
      const results = await Promise.all(
        parts.map(
          (part, k) =>
            new Promise<LoadResult>((resolve, reject) => {
              const id = nextId++;
              pending.set(id, { resolve, reject });
              pool[k]!.postMessage({ id, spec: part });
            }),
        ),
      );
      return { outcomes: results.flatMap((r) => r.outcomes), wallMs: Math.max(...results.map((r) => r.wallMs)) };
    },
    close,
  };
}
