import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { usesRedis, type Config } from '../config.ts';
import { endCrashedDrafts, type DraftedHistory } from '../core/crashed-drafts.ts';
import type { ProviderMessage } from '../core/providers/provider.ts';
import type { History } from '../core/store/history.ts';
import { MemoryHistory } from '../core/store/history/memory.ts';
import { PostgresHistory } from '../core/store/history/postgres.ts';
import { SqliteHistory } from '../core/store/history/sqlite.ts';
import { createMemoryStore } from '../core/store/memory/create.ts';
import { createRedisStore } from '../core/store/redis/create.ts';
import { parseHostPorts, type RedisTopology } from '../core/store/redis/topology.ts';
import type { Store } from '../core/store/store.ts';

const DAY_MS = 86_400_000;

export interface StoreHooks {
  /** A session dropped from the memory store to stay within MEMORY_MAX_SESSIONS. */
  readonly onSessionEvicted?: () => void;
  /** What the provider puts before every prompt (a system prompt): counted in the usage of the replies a crash left. */
  readonly preamble?: readonly ProviderMessage[] | undefined;
  /** Whether owners' sessions are counted (MAX_SESSIONS_PER_KEY applies): Redis keeps a set per owner only then. */
  readonly countsOwners?: boolean;
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
 * PostgreSQL, Redis or memory), the live roles (event logs, leases, signals) in Redis when one is
 * configured (REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES), in this process otherwise.
 */
export async function storeFrom(config: Config, logger: Logger, hooks: StoreHooks = {}): Promise<Store> {
  const history = await historyFrom(config, logger, hooks);
  const topology = redisTopology(config);
  if (topology) {
    const failover = topology.kind !== 'single';
    return createRedisStore({
      topology,
      logger,
      prefix: config.REDIS_PREFIX,
      waitReplicas: config.REDIS_WAIT_REPLICAS ?? (topology.kind === 'sentinel' ? 1 : 0),
      outageWaitMs: config.REDIS_OUTAGE_WAIT_MS ?? (failover ? 10_000 : 1_500),
      history,
      historyKind: config.STORE,
      historyIdleTtlMs: sessionTtlMs(config),
      historyCountsOwners: hooks.countsOwners,
    });
  }
  return createMemoryStore({ history: history ?? memoryHistory(config, hooks), historyKind: config.STORE });
}

/** The Redis the configuration names (a URL, Sentinels or a Cluster), if any. */
export function redisTopology(config: Config): RedisTopology | undefined {
  // Read at start-up: a missing or unreadable file stops the server, naming it.
  const tls = config.REDIS_TLS_CA_FILE ? { ca: readFileSync(config.REDIS_TLS_CA_FILE, 'utf8') } : undefined;
  const withTls = tls ? { tls } : {};
  if (config.REDIS_URL) return { kind: 'single', url: config.REDIS_URL, ...withTls };
  if (config.REDIS_SENTINELS && config.REDIS_SENTINEL_MASTER) {
    return { kind: 'sentinel', sentinels: parseHostPorts(config.REDIS_SENTINELS), master: config.REDIS_SENTINEL_MASTER, ...withTls };
  }
  if (config.REDIS_CLUSTER_NODES) return { kind: 'cluster', nodes: parseHostPorts(config.REDIS_CLUSTER_NODES), ...withTls };
  return undefined;
}

/** The history store, unless it is Redis's own (undefined: the Redis store makes it). */
async function historyFrom(config: Config, logger: Logger, hooks: StoreHooks): Promise<History | undefined> {
  switch (config.STORE) {
    case 'sqlite':
      return endingCrashedDrafts(await SqliteHistory.open({ path: join(config.DATA_DIR, 'history.db'), logger }), config, logger, hooks);
    case 'postgres': {
      // The configuration schema requires DATABASE_URL for this store.
      // Without Redis the live state is this process's: alone on the database, a draft it finds at
      // start is a crash's, as in SQLite (not so while another instance runs: a deploy's overlap).
      // With Redis, the instance that finds a reply dead ends it.
      const shared = usesRedis(config);
      const history = await PostgresHistory.open({ url: config.DATABASE_URL!, logger, soleInstance: !shared });
      return history.aloneAtStart ? endingCrashedDrafts(history, config, logger, hooks) : history;
    }
    case 'memory':
      return usesRedis(config) ? memoryHistory(config, hooks) : undefined;
    case 'redis':
      return undefined;
    default: {
      const unexpected: never = config.STORE;
      throw new Error(`unknown store ${String(unexpected)}`);
    }
  }
}

/** Ends the replies a crash left as drafts (a store only this process writes to), then hands the store on. */
async function endingCrashedDrafts(history: DraftedHistory, config: Config, logger: Logger, hooks: StoreHooks): Promise<History> {
  await endCrashedDrafts(history, { keepLast: config.MAX_HISTORY_MESSAGES, logger, preamble: hooks.preamble }).catch((error: unknown) =>
    logger.warn({ err: error }, 'could not end the replies a crash left unfinished; they read as interrupted, without usage'),
  );
  return history;
}
