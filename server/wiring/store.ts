import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config.ts';
import type { History } from '../core/store/history.ts';
import { MemoryHistory } from '../core/store/history/memory.ts';
import { PostgresHistory } from '../core/store/history/postgres.ts';
import { SqliteHistory } from '../core/store/history/sqlite.ts';
import { createMemoryStore } from '../core/store/memory/create.ts';
import { createRedisStore } from '../core/store/redis/create.ts';
import type { Store } from '../core/store/store.ts';

const DAY_MS = 86_400_000;

export interface StoreHooks {
  /** A session dropped from the memory store to stay within MEMORY_MAX_SESSIONS. */
  readonly onSessionEvicted?: () => void;
}

function memoryHistory(config: Config, hooks: StoreHooks): MemoryHistory {
  return new MemoryHistory({ maxSessions: config.MEMORY_MAX_SESSIONS, onEvicted: hooks.onSessionEvicted });
}

/** How long an idle session is kept (SESSION_TTL_DAYS; 0: forever). */
export function sessionTtlMs(config: Config): number {
  return Math.round(config.SESSION_TTL_DAYS * DAY_MS);
}

/**
 * The store the configuration names: history where STORE says (SQLite under DATA_DIR by default,
 * PostgreSQL, Redis or memory), the live roles (event logs, leases, signals) in Redis when
 * REDIS_URL is set, in this process otherwise.
 */
export async function storeFrom(config: Config, logger: Logger, hooks: StoreHooks = {}): Promise<Store> {
  const history = await historyFrom(config, logger, hooks);
  if (config.REDIS_URL) {
    return createRedisStore({
      url: config.REDIS_URL,
      logger,
      prefix: config.REDIS_PREFIX,
      history,
      historyKind: config.STORE,
      historyIdleTtlMs: sessionTtlMs(config),
    });
  }
  return createMemoryStore({ history: history ?? memoryHistory(config, hooks), historyKind: config.STORE });
}

/** The history store, unless it is Redis's own (undefined: the Redis store makes it). */
async function historyFrom(config: Config, logger: Logger, hooks: StoreHooks): Promise<History | undefined> {
  switch (config.STORE) {
    case 'sqlite':
      return SqliteHistory.open({ path: join(config.DATA_DIR, 'history.db'), logger });
    case 'postgres':
      // The configuration schema requires DATABASE_URL for this store.
      return PostgresHistory.open({ url: config.DATABASE_URL!, logger });
    case 'memory':
      return config.REDIS_URL ? memoryHistory(config, hooks) : undefined;
    case 'redis':
      return undefined;
    default: {
      const unexpected: never = config.STORE;
      throw new Error(`unknown store ${String(unexpected)}`);
    }
  }
}
