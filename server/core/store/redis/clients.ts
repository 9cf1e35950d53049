import type { ConnectionOptions } from 'node:tls';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { RedisTls, RedisTopology } from './topology.ts';

/** What every connection of a role has in common, whatever the topology. */
export interface ClientSettings {
  /** The connection's name in CLIENT LIST (`sluice-<instance>-<role>`). */
  readonly name: string;
  /** Commands wait while the connection is down (the subscriber), or fail at once (a clear 503). */
  readonly offlineQueue: boolean;
  readonly autoPipelining: boolean;
  readonly scripts?: RedisOptions['scripts'];
  /**
   * A command Redis has not answered in this long fails (`unavailable`, as one sent while it is
   * away): a Redis that stops answering (a paused client, a frozen primary) must not hang every
   * request for as long as it lasts. Not for connections that block by design (the tail's reads).
   */
  readonly commandTimeoutMs?: number;
}

// Calls fail fast while Redis is away (a clear 503 instead of a hung request) and the clients
// reconnect forever.
const COMMON: RedisOptions = { maxRetriesPerRequest: 0, connectTimeout: 2000 };
const retry = (attempt: number): number => Math.min(100 * attempt, 2000);
// Through a failover the primary is back within seconds, at another address the Sentinels know:
// asked again soon and often, so that replies waiting on the store go on as soon as it is there.
const retryAfterFailover = (attempt: number): number => Math.min(50 * attempt, 500);

function tlsOptions(tls: RedisTls | undefined): ConnectionOptions | undefined {
  if (!tls) return undefined;
  return tls.ca ? { ca: tls.ca } : {};
}

/**
 * A connection to one Redis server (by URL) or to the primary the Sentinels name: the client
 * follows the primary through failovers (it asks the Sentinels again after it lost the
 * connection, after a `+switch-master`, or when a write is refused by a demoted primary).
 */
export function serverClient(topology: Exclude<RedisTopology, { kind: 'cluster' }>, settings: ClientSettings): Redis {
  const options: RedisOptions = {
    ...COMMON,
    connectionName: settings.name,
    enableOfflineQueue: settings.offlineQueue,
    enableAutoPipelining: settings.autoPipelining,
    ...(settings.scripts ? { scripts: settings.scripts } : {}),
    ...(settings.commandTimeoutMs ? { commandTimeout: settings.commandTimeoutMs } : {}),
  };
  const tls = tlsOptions(topology.tls);
  if (topology.kind === 'single') return new Redis(topology.url, { ...options, retryStrategy: retry, ...(tls ? { tls } : {}) });
  return new Redis({
    ...options,
    sentinels: topology.sentinels.map(({ host, port }) => ({ host, port })),
    name: topology.master,
    role: 'master',
    retryStrategy: retryAfterFailover,
    sentinelRetryStrategy: retryAfterFailover,
    failoverDetector: true,
    // A primary demoted by a failover while this connection stayed up refuses writes: reconnect
    // (through the Sentinels, to the new primary) and send the command again.
    reconnectOnError: (error) => (error.message.startsWith('READONLY') ? 2 : false),
    ...(tls ? { tls, sentinelTLS: tls, enableTLSForSentinelMode: true } : {}),
  });
}

/**
 * A Redis Cluster: commands go to the master of each key's slot, and sharded subscriptions
 * (SSUBSCRIBE) to one connection per master, both following slot moves and failovers.
 */
export function clusterClient(topology: Extract<RedisTopology, { kind: 'cluster' }>, settings: ClientSettings): Cluster {
  const tls = tlsOptions(topology.tls);
  const options: ClusterOptions = {
    enableOfflineQueue: settings.offlineQueue,
    enableAutoPipelining: settings.autoPipelining,
    // ioredis 5 would auto-pipeline these with the commands of the slot's node (it leaves out
    // SUBSCRIBE, not SSUBSCRIBE): that node's command connection would then be a subscriber,
    // refusing every other command. They go to the sharded subscriber connections instead.
    autoPipeliningIgnoredCommands: ['ssubscribe', 'sunsubscribe'],
    shardedSubscribers: true,
    scaleReads: 'master',
    clusterRetryStrategy: retry,
    ...(settings.scripts ? { scripts: settings.scripts } : {}),
    redisOptions: {
      ...COMMON,
      connectionName: settings.name,
      ...(settings.commandTimeoutMs ? { commandTimeout: settings.commandTimeoutMs } : {}),
      ...(tls ? { tls } : {}),
    },
  };
  return new Cluster(
    topology.nodes.map(({ host, port }) => ({ host, port })),
    options,
  );
}
