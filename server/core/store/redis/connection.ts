import { randomBytes } from 'node:crypto';
import calculateSlot from 'cluster-key-slot';
import type { Cluster, Redis, RedisCommander } from 'ioredis';
import type { Logger } from 'pino';
import { SluiceError } from '../../errors.ts';
import { clusterClient, serverClient, type ClientSettings } from './clients.ts';
import { ClusterPubSub, ServerPubSub, type PubSub } from './pubsub.ts';
import { ReplicaWait } from './replica-wait.ts';
import { SCRIPTS, scriptSource, variadicScript, VARIADIC_SCRIPTS, type ScriptName, type VariadicScriptName } from './scripts.ts';
import { ShardTail } from './shard-tail.ts';
import { RedisTail, type Tail } from './tail.ts';
import { within } from '../../../../shared/within.ts';
import type { RedisTopology } from './topology.ts';

export interface RedisConnectionOptions {
  /** One Redis server: shorthand for `topology: { kind: 'single', url }`. */
  readonly url?: string;
  readonly topology?: RedisTopology;
  readonly logger: Logger;
  /** Prefix of every key and channel, so several deployments can share one Redis. */
  readonly prefix?: string;
  /**
   * Replicas that must confirm the writes that start and end a turn before they count as done
   * (WAIT), so that a failover cannot lose them (0: none). Not on a cluster.
   */
  readonly waitReplicas?: number;
  /** How long such a write waits for its replicas (default 500 ms). */
  readonly waitTimeoutMs?: number;
}

/** How long Redis may take to answer a command before it counts as away (it answers in well under a millisecond). */
const COMMAND_TIMEOUT_MS = 1000;

/** The commands every role uses: the same on one server and on a cluster, plus the scripts. */
export type Scripted = RedisCommander & Record<ScriptName, (...args: Array<string | number>) => Promise<unknown>>;

const SCRIPT_OPTIONS = Object.fromEntries(
  (Object.keys(SCRIPTS) as ScriptName[]).map((name) => [name, { lua: scriptSource(name), numberOfKeys: SCRIPTS[name].keys }]),
);
const VARIADIC = Object.fromEntries((Object.keys(VARIADIC_SCRIPTS) as VariadicScriptName[]).map((name) => [name, variadicScript(name)])) as Record<
  VariadicScriptName,
  { readonly lua: string; readonly sha: string }
>;

/**
 * The Redis connections every role shares, on one server, the primary the Sentinels name, or a
 * Cluster: one for commands (auto-pipelined), pub/sub for signals, the tail that serves every
 * listener's wait for new events, and, when writes must wait for replicas, one for those. The
 * roles use the same commands on every topology; where a cluster's slots force a difference
 * (which keys a script may take together, how waits and messages travel), it is decided here.
 * Calls fail fast while Redis is away (a clear 503 instead of a hung request) and the clients
 * reconnect forever.
 */
export class RedisConnection {
  readonly prefix: string;
  readonly logger: Logger;
  /** A random id of this connection set, in every connection's name (`sluice-<instance>-<role>`). */
  readonly instance: string;
  readonly topology: RedisTopology;
  readonly #commands: Redis | Cluster;
  readonly #pubsub: PubSub;
  readonly #subscriber: Redis | undefined;
  readonly #replicaWait: ReplicaWait | undefined;
  #tail: Tail | undefined;
  #tailReader: Redis | undefined;
  #closing: Promise<void> | undefined;
  /**
   * Redis answered a write with a refusal (out of memory, read-only, failing to persist): the key
   * the probe then writes, in the refused key's slot (on a cluster, the refusing shard). See healthy().
   */
  #refusing: string | undefined;

  constructor(options: RedisConnectionOptions) {
    const topology = options.topology ?? (options.url === undefined ? undefined : { kind: 'single' as const, url: options.url });
    if (!topology) throw new RangeError('redis: give a url or a topology');
    if (topology.kind === 'single' && !/^rediss?:\/\//.test(topology.url)) {
      throw new RangeError(`redis: url must start with redis:// or rediss://, got "${topology.url}"`);
    }
    const waitReplicas = options.waitReplicas ?? 0;
    if (!Number.isInteger(waitReplicas) || waitReplicas < 0) throw new RangeError(`redis: waitReplicas must be a non-negative integer, got ${waitReplicas}`);
    if (waitReplicas > 0 && topology.kind === 'cluster') throw new RangeError('redis: waitReplicas is not supported on a cluster');
    this.topology = topology;
    this.prefix = options.prefix ?? 'sluice:';
    this.logger = options.logger;
    // Named, so that an operator (or a test) can tell each instance's connections apart in CLIENT LIST.
    this.instance = randomBytes(4).toString('hex');
    const settings = (role: string, rest: Omit<ClientSettings, 'name'>): ClientSettings => ({ name: `sluice-${this.instance}-${role}`, ...rest });
    const main = settings('main', { offlineQueue: false, autoPipelining: true, scripts: SCRIPT_OPTIONS, commandTimeoutMs: COMMAND_TIMEOUT_MS });
    if (topology.kind === 'cluster') {
      const cluster = clusterClient(topology, main);
      this.#commands = cluster;
      this.#pubsub = new ClusterPubSub(cluster);
    } else {
      const server = serverClient(topology, main);
      this.#commands = server;
      this.#subscriber = serverClient(topology, settings('sub', { offlineQueue: true, autoPipelining: false }));
      this.#subscriber.on('error', noop);
      this.#pubsub = new ServerPubSub(this.#subscriber, server);
      if (waitReplicas > 0) {
        // Its WAITs take up to their own timeout: the command's is counted beyond it.
        const durable = serverClient(
          topology,
          settings('durable', {
            offlineQueue: false,
            autoPipelining: true,
            scripts: SCRIPT_OPTIONS,
            commandTimeoutMs: COMMAND_TIMEOUT_MS + (options.waitTimeoutMs ?? 500),
          }),
        );
        durable.on('error', noop);
        this.#replicaWait = new ReplicaWait(durable, { replicas: waitReplicas, timeoutMs: options.waitTimeoutMs ?? 500, logger: options.logger });
      }
    }
    let down = false;
    this.#commands.on('error', (error: Error) => {
      if (!down) this.logger.warn({ err: error }, 'redis unreachable');
      down = true;
    });
    this.#commands.on('ready', () => {
      if (down) this.logger.info('redis reachable again');
      down = false;
    });
  }

  /** The command connection (auto-pipelined; its scripts are methods named after their files). */
  get redis(): Scripted {
    return this.#commands as unknown as Scripted;
  }

  /** Messages between instances. */
  get pubsub(): PubSub {
    return this.#pubsub;
  }

  get closed(): boolean {
    return this.#closing !== undefined;
  }

  key(...parts: string[]): string {
    return this.prefix + parts.join(':');
  }

  /**
   * Keys one script call may take together have the same group: every key on one server, the
   * keys of one hash slot on a cluster (a script touches one slot there).
   */
  scriptGroup(key: string): number {
    return this.topology.kind === 'cluster' ? calculateSlot(key) : 0;
  }

  /** Whether writes that must outlive a failover wait for replicas (see write). */
  get waitsForReplicas(): boolean {
    return this.#replicaWait !== undefined;
  }

  /** Whether scripts announce appended events on a sharded channel named like the log (see ShardTail). */
  get announcesAppends(): boolean {
    return this.topology.kind === 'cluster';
  }

  /**
   * Runs a script whose number of keys varies by call. Not as a command defined on the client:
   * on a cluster, ioredis 5 routes such a command's auto-pipeline by its first argument (the
   * number of keys), not by its first key. EVALSHA sent by name is routed by its keys; a server
   * that does not have the script yet gets its source once (EVAL).
   */
  async evalScript(redis: Scripted, name: VariadicScriptName, keys: readonly string[], args: ReadonlyArray<string | number>): Promise<unknown> {
    const { lua, sha } = VARIADIC[name];
    try {
      return await redis.call('EVALSHA', sha, keys.length, ...keys, ...args);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
      return redis.call('EVAL', lua, keys.length, ...keys, ...args);
    }
  }

  /** Runs a command; any failure becomes the client-safe `unavailable`. */
  async call<T>(run: (redis: Scripted) => Promise<T>): Promise<T> {
    if (this.#closing) throw new SluiceError('unavailable', 'The session store is closed');
    try {
      return await run(this.redis);
    } catch (error) {
      if (this.#refusing === undefined && refusesWrites(error)) {
        this.#refusing = this.#probeKey(error);
        this.logger.warn({ err: error }, 'redis refuses writes');
      }
      throw new SluiceError('unavailable', 'The session store is unavailable; try again shortly', { cause: error });
    }
  }

  /**
   * Runs writes that must survive a failover: with `waitReplicas`, on the connection that waits
   * for the replicas, and (`replicated`) only done once they have them. Writes that must stay in
   * order with those go through here too, with `replicated` false.
   */
  async write<T>(run: (redis: Scripted) => Promise<T>, replicated: boolean): Promise<T> {
    const wait = this.#replicaWait;
    if (!wait) return this.call(run);
    return this.call(async () => {
      const result = await run(wait.client as unknown as Scripted);
      if (replicated) await wait.replicated();
      return result;
    });
  }

  /** Waits for new stream entries, for every listener of this instance (see RedisTail, ShardTail). */
  get tail(): Tail {
    if (!this.#tail) {
      const commands = this.#commands;
      if (this.topology.kind === 'cluster') {
        this.#tail = new ShardTail(commands as Cluster);
      } else {
        // Its reads block for up to a second by design: no command timeout.
        const reader = (commands as Redis).duplicate({
          enableOfflineQueue: true,
          enableAutoPipelining: false,
          connectionName: `sluice-${this.instance}-tail`,
          commandTimeout: undefined,
        });
        reader.on('error', noop);
        this.#tailReader = reader;
        this.#tail = new RedisTail(reader, commands as Redis);
      }
    }
    return this.#tail;
  }

  /** Calls `fn` once, when the command connection is first ready (at once if it is). */
  onceReady(fn: () => void): void {
    if (this.#commands.status === 'ready') fn();
    else this.#commands.once('ready', fn);
  }

  /** Resolves true once every connection that serves requests is ready (the replica-waiting one too: writes go through it). */
  async ready(timeoutMs: number): Promise<boolean> {
    const clients: Array<Redis | Cluster> = [this.#commands];
    if (this.#replicaWait) clients.push(this.#replicaWait.client);
    const deadline = Date.now() + timeoutMs;
    for (const client of clients) if (!(await readyWithin(client, deadline - Date.now()))) return false;
    return true;
  }

  async healthy(): Promise<boolean> {
    if (this.#closing || this.#commands.status !== 'ready') return false;
    const probe = this.#refusing;
    if (probe === undefined) {
      return this.#commands.ping().then(
        () => true,
        () => false,
      );
    }
    // A Redis that refuses writes answers PING all the same; a write tells when it takes them
    // again (as the SQL stores probe a disk that was full).
    return this.#commands.set(probe, '1', 'PX', PROBE_TTL_MS).then(
      () => {
        this.#refusing = undefined;
        this.logger.info('redis takes writes again');
        return true;
      },
      () => false,
    );
  }

  /** A key of the refused command's slot (its first key's hash tag, or the key itself), else this instance's own. */
  #probeKey(error: unknown): string {
    const { name, args } = (error as { command?: { name?: unknown; args?: unknown } }).command ?? {};
    if (typeof name === 'string' && Array.isArray(args)) {
      const scripted = /^eval/i.test(name);
      const first: unknown = scripted ? (Number(args[1]) > 0 ? args[2] : undefined) : args[0];
      if (typeof first === 'string' || Buffer.isBuffer(first)) {
        const key = String(first);
        const open = key.indexOf('{');
        const close = open === -1 ? -1 : key.indexOf('}', open + 1);
        return this.key('probe', `{${close > open + 1 ? key.slice(open + 1, close) : key}}`);
      }
    }
    return this.key('probe', this.instance);
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#tail?.close();
      this.#pubsub.close();
      this.#tailReader?.disconnect();
      await Promise.allSettled([quit(this.#commands), this.#subscriber && quit(this.#subscriber), this.#replicaWait && quit(this.#replicaWait.client)]);
    })();
    return this.#closing;
  }
}

function noop(): void {}

/** How long closing waits for Redis to answer QUIT before it drops the connection. */
const QUIT_WAIT_MS = 1000;
/** How long the probe key of a Redis that refused writes lives (healthy() writes it). */
const PROBE_TTL_MS = 10_000;

/**
 * Redis's refusals of a write that its PING does not show (out of memory with noeviction, a
 * read-only replica, snapshots failing, too few replicas), also from inside a script.
 */
function refusesWrites(error: unknown): boolean {
  return error instanceof Error && /(?:^|\W)(?:OOM|READONLY|MISCONF|NOREPLICAS)\b/.test(error.message);
}

/**
 * Closes a connection politely, within a bound: a server that does not answer (a frozen host)
 * would hold a QUIT for ever on a connection without a command timeout (the subscriber's).
 */
async function quit(redis: Redis | Cluster): Promise<void> {
  if (redis.status !== 'ready') return redis.disconnect();
  const quitted = await within(
    redis.quit().then(
      () => true,
      () => false,
    ),
    QUIT_WAIT_MS,
    () => false,
  );
  if (!quitted) redis.disconnect();
}

function readyWithin(client: Redis | Cluster, timeoutMs: number): Promise<boolean> {
  if (client.status === 'ready') return Promise.resolve(true);
  if (timeoutMs <= 0) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      client.off('ready', onReady);
      resolve(false);
    }, timeoutMs);
    const onReady = (): void => {
      clearTimeout(timer);
      resolve(true);
    };
    client.once('ready', onReady);
  });
}
