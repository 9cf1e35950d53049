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
const timer = setInterval(() => {
  try {
    checkpoint.all();
  } catch (error) {
    parentPort.postMessage({ failed: String(error && error.message || error) });
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
 * `onFailure` is called once if the worker stops working (the writer should checkpoint again).
 */
export function startCheckpointer(path: string, intervalMs: number, logger: Logger, onFailure: () => void): Checkpointer {
  const driver = createRequire(import.meta.url).resolve('@photostructure/sqlite');
  const worker = new Worker(WORKER, { eval: true, workerData: { path, driver, intervalMs } });
  let failed = false;
  const fail = (reason: unknown): void => {
    if (failed || closing) return;
    failed = true;
    logger.warn({ reason }, 'history: the SQLite checkpointer stopped; the writer checkpoints itself');
    onFailure();
  };
  let closing = false;
  let running = true;
  const exited = once(worker, 'exit').then(() => {
    running = false;
  });
  worker.on('message', (message: { failed?: string }) => fail(message.failed));
  worker.on('error', fail);
  worker.on('exit', (code) => fail(`exited with ${code}`));
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
