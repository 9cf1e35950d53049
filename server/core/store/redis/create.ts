import type { Logger } from 'pino';
import { RedisEventLog } from '../event-log/redis.ts';
import { RedisHistory } from '../history/redis.ts';
import type { History } from '../history.ts';
import { RedisLeaseStore } from '../leases/redis.ts';
import { RedisSignals } from '../signals/redis.ts';
import type { Store } from '../store.ts';
import { RedisConnection } from './connection.ts';

export interface RedisStoreOptions {
  readonly url: string;
  readonly logger: Logger;
  /** Prefix of every key and channel, so several deployments can share one Redis. */
  readonly prefix?: string;
  /** History kept elsewhere (a database); in Redis lists by default. */
  readonly history?: History;
}

/** Every live role in one Redis, which several instances share. */
export function createRedisStore(options: RedisStoreOptions): Store {
  const connection = new RedisConnection(options);
  const history = options.history ?? new RedisHistory(connection);
  const signals = new RedisSignals(connection);
  let closing: Promise<void> | undefined;
  return {
    kind: options.history ? 'redis+history' : 'redis',
    history,
    events: new RedisEventLog(connection),
    leases: new RedisLeaseStore(connection),
    signals,
    healthy: () => connection.healthy(),
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
