import type { Logger } from 'pino';
import type { History } from '../history.ts';

export interface RetentionOptions {
  readonly history: History;
  /** Sessions untouched this long are deleted (SESSION_TTL_DAYS in ms). */
  readonly ttlMs: number;
  /** How often to sweep. Default: an hour (the TTL is counted in days). */
  readonly intervalMs?: number;
  /** Epoch ms. Default: Date.now. */
  readonly clock?: () => number;
  readonly logger: Logger;
  /** Told how many sessions each sweep deleted, when it deleted some (for the metrics). */
  readonly onExpired?: (count: number) => void;
}

export interface Retention {
  /** Deletes the sessions idle longer than the TTL now; resolves with how many. */
  sweep(): Promise<number>;
  stop(): void;
}

/**
 * Deletes idle sessions: once at start, then every `intervalMs`. Instances sharing a database
 * may all sweep; a session is deleted once. A failed sweep is logged and tried at the next tick.
 */
export function startRetention(options: RetentionOptions): Retention {
  const { history, ttlMs, logger } = options;
  const intervalMs = options.intervalMs ?? 3_600_000;
  const clock = options.clock ?? Date.now;
  if (!(ttlMs > 0)) throw new RangeError(`retention: ttlMs must be positive, got ${ttlMs}`);
  if (!(intervalMs > 0)) throw new RangeError(`retention: intervalMs must be positive, got ${intervalMs}`);
  let running: Promise<number> | undefined;
  const sweep = (): Promise<number> =>
    (running ??= history
      .expireIdle(clock() - ttlMs)
      .then((deleted) => {
        if (deleted > 0) {
          logger.info({ deleted, ttlDays: ttlMs / 86_400_000 }, 'history: idle sessions deleted');
          options.onExpired?.(deleted);
        }
        return deleted;
      })
      .finally(() => (running = undefined)));
  const tick = (): void => {
    sweep().catch((error: unknown) => logger.warn({ err: error }, 'history: the retention sweep failed; trying again later'));
  };
  const first = setTimeout(tick, 0);
  const timer = setInterval(tick, intervalMs);
  first.unref();
  timer.unref();
  return {
    sweep,
    stop() {
      clearTimeout(first);
      clearInterval(timer);
    },
  };
}
