import cluster, { type Worker } from 'node:cluster';
import { secretsOf, usesRedis, type Config } from './config.ts';
import { createLogger } from './observability/logger.ts';
import { onHangup } from './hangups.ts';
import { serveClusterMetrics } from './observability/cluster-metrics.ts';

/** The pause before replacing a worker that died before it served, doubling with each such death in a row. */
const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 30_000;

/**
 * One Sluice process per core on one port (Node's cluster: the primary accepts connections and
 * hands them to the workers). Workers share sessions, event logs, locks and limits through Redis,
 * so a reply started on one can be resumed or cancelled through any other.
 */
export async function runPrimary(config: Config, workers: number): Promise<void> {
  const logger = createLogger(config.LOG_LEVEL, { service: 'sluice', role: 'primary' }, secretsOf(config));
  if (!usesRedis(config)) {
    console.error('sluice: WORKERS > 1 needs REDIS_URL (or REDIS_SENTINELS, or REDIS_CLUSTER_NODES): the workers share sessions, logs and locks through Redis');
    process.exit(2);
  }
  if (config.STORE === 'sqlite' || config.STORE === 'memory') {
    console.error(`sluice: WORKERS > 1 needs a history the workers share (STORE=redis or postgres), not STORE=${config.STORE}`);
    process.exit(2);
  }
  let stopping = false;
  let announced = false;
  const listening = new Set<Worker>();
  /** Workers that were starting when a SIGHUP came: it is handed on once they serve. */
  const reloadWhenServing = new Set<Worker>();

  /** Workers in a row that died before they served: each replacement waits twice as long as the last. */
  let failedStarts = 0;
  const retries = new Set<NodeJS.Timeout>();

  const fork = (): void => {
    const worker = cluster.fork();
    let served = false;
    worker.on('listening', (address) => {
      served = true;
      failedStarts = 0;
      listening.add(worker);
      if (reloadWhenServing.delete(worker)) worker.process.kill('SIGHUP');
      if (announced || listening.size < workers) return;
      announced = true;
      const url = `http://${config.HOST.includes(':') ? `[${config.HOST}]` : config.HOST}:${address.port}`;
      logger.info({ url, workers }, `Sluice listening on ${url} with ${workers} workers`);
    });
    worker.on('exit', (code, signal) => {
      listening.delete(worker);
      reloadWhenServing.delete(worker);
      if (stopping) return;
      // A worker that dies is replaced; its running replies end as the guide describes (resumable
      // elsewhere). One that died before it served (its files gone, its store refusing it) would
      // die again as fast: the next try waits, longer each time.
      if (served) {
        logger.error({ pid: worker.process.pid, code, signal }, 'worker exited; starting another');
        fork();
        return;
      }
      const waitMs = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** failedStarts++);
      logger.error({ pid: worker.process.pid, code, signal }, `worker exited before it served; next try in ${waitMs} ms`);
      const retry = setTimeout(() => {
        retries.delete(retry);
        if (!stopping) fork();
      }, waitMs);
      retries.add(retry);
    });
  };
  serveClusterMetrics(() => listening);
  for (let i = 0; i < workers; i++) fork();

  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    for (const retry of retries) clearTimeout(retry);
    retries.clear();
    logger.info({ signal }, 'stopping workers (each drains its replies)');
    const alive = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && !w.isDead());
    let failed = false;
    let left = alive.length;
    if (left === 0) process.exit(0);
    for (const worker of alive) {
      worker.once('exit', (code, signal) => {
        // Ended by the SIGTERM itself: a worker still starting, before its handler (nothing to drain).
        if (code !== 0 && signal !== 'SIGTERM') failed = true;
        if (--left === 0) process.exit(failed ? 1 : 0);
      });
      worker.process.kill('SIGTERM');
    }
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // Each worker holds its own copy of the keys: each reads the file again, one still starting
  // once it serves (it may have read the file already, and before it serves the signal could
  // reach it before it listens for it).
  onHangup(() => {
    if (stopping) return;
    for (const worker of Object.values(cluster.workers ?? {})) {
      if (!worker || worker.isDead()) continue;
      if (listening.has(worker)) worker.process.kill('SIGHUP');
      else reloadWhenServing.add(worker);
    }
  });
}
