import { once } from 'node:events';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';

export interface Checkpointer {
  /** Stops the worker (after the checkpoint it may be running). */
  close(): Promise<void>;
}

// The worker's whole program, plain CommonJS so that it runs the same from the sources (tsx) and
// from the server bundle. It only moves committed pages from the WAL into the database file.
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { DatabaseSync } = require(workerData.driver);
const db = new DatabaseSync(workerData.path);
db.exec('PRAGMA busy_timeout = 1000');
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
let failing = false;
const timer = setInterval(() => {
  try {
    checkpoint.all();
    if (failing) parentPort.postMessage({ recovered: true });
    failing = false;
  } catch (error) {
    if (!failing) parentPort.postMessage({ failed: String(error && error.message || error) });
    failing = true;
  }
}, workerData.intervalMs);
parentPort.on('message', () => {
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

/**
 * Checkpoints a WAL database from a worker thread, every `intervalMs`. Left to the writer,
 * SQLite checkpoints inside the commit that crosses 1000 WAL pages: copying 4 MB and an fsync
 * of the database file, measured at 13-27 ms here, on the event loop that streams tokens. The
 * writer's own automatic checkpoint stays on only as a backstop for a WAL this one lets grow.
 * `onFailure` is called when its checkpoints fail or the worker is gone (the writer should
 * checkpoint again), `onRecovery` when one works again after a failure (a full disk that has room
 * again): the writer can leave it to the worker once more.
 */
export function startCheckpointer(path: string, intervalMs: number, logger: Logger, on: { onFailure(): void; onRecovery(): void }): Checkpointer {
  const driver = createRequire(import.meta.url).resolve('@photostructure/sqlite');
  const worker = new Worker(WORKER, { eval: true, workerData: { path, driver, intervalMs } });
  let failed = false;
  let gone = false;
  const fail = (reason: unknown): void => {
    if (failed || closing) return;
    failed = true;
    logger.warn({ reason }, 'history: the SQLite checkpointer stopped; the writer checkpoints itself');
    on.onFailure();
  };
  const recover = (): void => {
    if (!failed || gone || closing) return;
    failed = false;
    logger.info('history: the SQLite checkpointer works again; the writer leaves checkpoints to it');
    on.onRecovery();
  };
  let closing = false;
  let running = true;
  const exited = once(worker, 'exit').then(() => {
    running = false;
  });
  worker.on('message', (message: { failed?: string; recovered?: true }) => (message.recovered ? recover() : fail(message.failed)));
  worker.on('error', fail);
  worker.on('exit', (code) => {
    gone = true;
    fail(`exited with ${code}`);
  });
  // It must not keep the process alive on its own.
  worker.unref();
  return {
    async close() {
      closing = true;
      // Held by the wait: a process with nothing else to do would otherwise exit before the store closed.
      worker.ref();
      if (running) worker.postMessage('close');
      await exited;
    },
  };
}
