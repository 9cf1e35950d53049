import { randomBytes } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { SluiceError } from '../../errors.ts';
import { SCRIPTS, scriptSource, type ScriptName } from './scripts.ts';
import { RedisTail } from './tail.ts';

export interface RedisConnectionOptions {
  readonly url: string;
  readonly logger: Logger;
  /** Prefix of every key and channel, so several deployments can share one Redis. */
  readonly prefix?: string;
}

type Scripted = Redis & Record<ScriptName, (...args: Array<string | number>) => Promise<unknown>>;

/**
 * The Redis connections every role shares: one for commands (auto-pipelined), one subscriber for
 * signals, and one for the blocking reads of every listener (the tail). Calls fail fast while Redis is away (a clear 503
 * instead of a hung request) and the clients reconnect forever.
 */
export class RedisConnection {
  readonly prefix: string;
  readonly logger: Logger;
  /** A random id of this connection set, in every connection's name (`sluice-<instance>-<role>`). */
  readonly instance: string;
  readonly #redis: Scripted;
  readonly #sub: Redis;
  #tail: RedisTail | undefined;
  #tailReader: Redis | undefined;
  #closing: Promise<void> | undefined;

  constructor(options: RedisConnectionOptions) {
    if (!/^rediss?:\/\//.test(options.url)) throw new RangeError(`redis: url must start with redis:// or rediss://, got "${options.url}"`);
    this.prefix = options.prefix ?? 'sluice:';
    this.logger = options.logger;
    const common: RedisOptions = {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: 2000,
      retryStrategy: (attempt) => Math.min(100 * attempt, 2000),
    };
    // Named, so that an operator (or a test) can tell each instance's connections apart in CLIENT LIST.
    this.instance = randomBytes(4).toString('hex');
    const name = (role: string): string => `sluice-${this.instance}-${role}`;
    const redis = new Redis(options.url, { ...common, enableAutoPipelining: true, connectionName: name('main') });
    for (const name of Object.keys(SCRIPTS) as ScriptName[]) redis.defineCommand(name, { lua: scriptSource(name), numberOfKeys: SCRIPTS[name].keys });
    this.#redis = redis as Scripted;
    this.#sub = new Redis(options.url, { ...common, enableOfflineQueue: true, connectionName: name('sub') });
    let down = false;
    redis.on('error', (error: Error) => {
      if (!down) this.logger.warn({ err: error }, 'redis unreachable');
      down = true;
    });
    redis.on('ready', () => {
      if (down) this.logger.info('redis reachable again');
      down = false;
    });
    this.#sub.on('error', noop);
  }

  /** The command connection (auto-pipelined; its scripts are methods named after their files). */
  get redis(): Scripted {
    return this.#redis;
  }

  /** The subscriber connection. */
  get subscriber(): Redis {
    return this.#sub;
  }

  get closed(): boolean {
    return this.#closing !== undefined;
  }

  key(...parts: string[]): string {
    return this.prefix + parts.join(':');
  }

  /** Runs a command; any failure becomes the client-safe `unavailable`. */
  async call<T>(run: (redis: Scripted) => Promise<T>): Promise<T> {
    if (this.#closing) throw new SluiceError('unavailable', 'The session store is closed');
    try {
      return await run(this.#redis);
    } catch (error) {
      throw new SluiceError('unavailable', 'The session store is unavailable; try again shortly', { cause: error });
    }
  }

  /** Waits for new stream entries, for every listener of this instance, on one connection (see RedisTail). */
  get tail(): RedisTail {
    if (!this.#tail) {
      const reader = this.#redis.duplicate({ enableOfflineQueue: true, enableAutoPipelining: false, connectionName: `sluice-${this.instance}-tail` });
      reader.on('error', noop);
      this.#tailReader = reader;
      this.#tail = new RedisTail(reader, this.#redis);
    }
    return this.#tail;
  }

  async ready(timeoutMs: number): Promise<boolean> {
    if (this.#redis.status === 'ready') return true;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#redis.off('ready', onReady);
        resolve(false);
      }, timeoutMs);
      const onReady = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      this.#redis.once('ready', onReady);
    });
  }

  async healthy(): Promise<boolean> {
    if (this.#closing || this.#redis.status !== 'ready') return false;
    return this.#redis.ping().then(
      () => true,
      () => false,
    );
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#tail?.close();
      this.#tailReader?.disconnect();
      await Promise.allSettled([quit(this.#redis), quit(this.#sub)]);
    })();
    return this.#closing;
  }
}

function noop(): void {}

async function quit(redis: Redis): Promise<void> {
  if (redis.status === 'ready') await redis.quit().catch(() => redis.disconnect());
  else redis.disconnect();
}
