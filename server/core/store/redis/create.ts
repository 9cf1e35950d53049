import { RedisEventLog } from '../event-log/redis.ts';
import { RedisHistory } from '../history/redis.ts';
import type { History } from '../history.ts';
import { RedisLeaseStore } from '../leases/redis.ts';
import { RedisSignals } from '../signals/redis.ts';
import type { Store } from '../store.ts';
import { RedisConnection, type RedisConnectionOptions } from './connection.ts';
import { checkHistoryPersistence } from './persistence-check.ts';

export interface RedisStoreOptions extends RedisConnectionOptions {
  /** History kept elsewhere (a database); in Redis by default. */
  readonly history?: History;
  /** For logs: the history's backend, when it is not Redis. */
  readonly historyKind?: string;
  /** Redis history of a session expires this long after its last write (0: never). */
  readonly historyIdleTtlMs?: number;
  /** Whether Redis history counts each owner's sessions (RedisHistoryOptions.countsOwners). */
  readonly historyCountsOwners?: boolean;
  /** How long replies wait for Redis through an outage (see EventLog.outageWaitMs). */
  readonly outageWaitMs?: number;
}

/** Every live role in one Redis (a server, the Sentinels' primary, or a Cluster), which several instances share. */
export function createRedisStore(options: RedisStoreOptions): Store {
  const connection = new RedisConnection(options);
  const history =
    options.history ??
    new RedisHistory(connection, {
      logger: options.logger,
      idleTtlMs: options.historyIdleTtlMs ?? 0,
      countsOwners: options.historyCountsOwners,
    });
  const signals = new RedisSignals(connection);
  // Once Redis first answers (at start-up, or later when it was down then): a history Redis would
  // lose whole in its own restart is worth a word.
  if (!options.history) connection.onceReady(() => void checkHistoryPersistence(connection, options.logger));
  let closing: Promise<void> | undefined;
  return {
    kind: options.historyKind ? `redis, history in ${options.historyKind}` : 'redis',
    history,
    events: new RedisEventLog(connection, { outageWaitMs: options.outageWaitMs }),
    leases: new RedisLeaseStore(connection),
    signals,
    healthy: async () => (await connection.healthy()) && (await history.healthy()),
    ready: (timeoutMs) => connection.ready(timeoutMs),
    close: () => {
      closing ??= (async () => {
        signals.close();
        await Promise.all([connection.close(), history.close()]);
      })();
      return closing;
    },
  };
}
