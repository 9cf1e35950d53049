import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { ChatMessage } from '../../../shared/messages.ts';
import { StreamEvent } from '../../../shared/stream-events.ts';
import { SluiceError } from '../errors.ts';
import type { GenerationRecord, LoggedEvent, Store } from './store.ts';

export interface RedisStoreOptions {
  readonly url: string;
  readonly logger: Logger;
  /** Prefix of every key and channel, so several deployments can share one Redis. */
  readonly prefix?: string;
}

// Compare-and-set scripts: a lock is only touched by the generation that holds it.
const REFRESH = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;
const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
// A log has a lifetime even while running, so that one abandoned by a dead instance cannot stay forever.
const RUNNING_LOG_TTL_MS = 24 * 60 * 60 * 1000;
const BLOCKING_POOL_SIZE = 16;
// Count in a fixed window: the first hit starts the window's expiry.
const HIT_WINDOW = `local n = redis.call('incr', KEYS[1]) if n == 1 then redis.call('pexpire', KEYS[1], ARGV[1]) end return {n, redis.call('pttl', KEYS[1])}`;
// Slots are members of a sorted set scored by their expiry; expired ones are dropped first.
const ACQUIRE_SLOT = `redis.call('zremrangebyscore', KEYS[1], '-inf', ARGV[1])
if redis.call('zscore', KEYS[1], ARGV[2]) or redis.call('zcard', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('zadd', KEYS[1], ARGV[4], ARGV[2]) redis.call('pexpire', KEYS[1], ARGV[5]) return 1 end
return 0`;
// Appends a batch of events (KEYS: logs; ARGV: id and JSON per event, then the running log's TTL).
// Per event 1, or 0 when an entry with that id is already there; a log gets its TTL with event 1.
const APPEND_EVENTS = `local added = {}
for i = 1, #KEYS do
  local id = ARGV[2 * i - 1]
  local reply = redis.pcall('xadd', KEYS[i], id, 'e', ARGV[2 * i])
  if type(reply) == 'table' and reply.err then
    if not string.find(reply.err, 'equal or smaller', 1, true) then return redis.error_reply(reply.err) end
    added[i] = 0
  else
    added[i] = 1
    if id == '0-1' then redis.call('pexpire', KEYS[i], ARGV[#ARGV]) end
  end
end
return added`;
// Redis runs one script at a time: a batch stays short enough not to hold up other clients.
const MAX_APPEND_BATCH = 512;

interface PendingAppend {
  readonly key: string;
  readonly id: string;
  readonly json: string;
  readonly resolve: (added: boolean) => void;
  readonly reject: (error: unknown) => void;
}

type AppendingRedis = Redis & { sluiceAppendEvents(...args: Array<string | number>): Promise<number[]> };

/**
 * History in lists, event logs in Redis Streams (entry ids `0-<seq>`), locks and liveness in keys
 * with expiry, listener presence in sorted sets, and cancels over pub/sub.
 */
export class RedisStore implements Store {
  readonly shared = true;
  readonly kind = 'redis';
  readonly #redis: AppendingRedis;
  /** Events asked for in this turn of the event loop, written together at its end. */
  #appends: PendingAppend[] = [];
  readonly #sub: Redis;
  readonly #idleReaders: Redis[] = [];
  readonly #busyReaders = new Set<Redis>();
  readonly #prefix: string;
  readonly #logger: Logger;
  readonly #cancelHandlers = new Set<(generationId: string) => void>();
  #closing: Promise<void> | undefined;

  constructor(options: RedisStoreOptions) {
    if (!/^rediss?:\/\//.test(options.url)) {
      throw new SluiceError('internal', `REDIS_URL must start with redis:// or rediss://, got "${options.url}"`);
    }
    this.#prefix = options.prefix ?? 'sluice:';
    this.#logger = options.logger;
    const common: RedisOptions = {
      // Fail fast while Redis is away (a clear 503 instead of a hung request); reconnect forever.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: 2000,
      retryStrategy: (attempt) => Math.min(100 * attempt, 2000),
    };
    const redis = new Redis(options.url, { ...common, enableAutoPipelining: true });
    redis.defineCommand('sluiceAppendEvents', { lua: APPEND_EVENTS });
    this.#redis = redis as AppendingRedis;
    this.#sub = new Redis(options.url, { ...common, enableOfflineQueue: true });
    let down = false;
    this.#redis.on('error', (error: Error) => {
      if (!down) this.#logger.warn({ err: error }, 'redis unreachable');
      down = true;
    });
    this.#redis.on('ready', () => {
      if (down) this.#logger.info('redis reachable again');
      down = false;
    });
    this.#sub.on('error', () => undefined);
    const channel = this.#key('cancel');
    this.#sub.subscribe(channel).catch(() => undefined);
    this.#sub.on('message', (from: string, generationId: string) => {
      if (from !== channel) return;
      for (const handler of this.#cancelHandlers) handler(generationId);
    });
  }

  /** Resolves once connected, or after `timeoutMs` (the store then reports `unavailable` until Redis is back). */
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

  #key(...parts: string[]): string {
    return this.#prefix + parts.join(':');
  }

  async #call<T>(run: () => Promise<T>): Promise<T> {
    if (this.#closing) throw new SluiceError('unavailable', 'The session store is closed');
    try {
      return await run();
    } catch (error) {
      throw new SluiceError('unavailable', 'The session store is unavailable; try again shortly', { cause: error });
    }
  }

  getMessages(sessionKey: string): Promise<ChatMessage[]> {
    return this.#call(async () => {
      const raw = await this.#redis.lrange(this.#key('h', sessionKey), 0, -1);
      return raw.map((entry) => ChatMessage.parse(JSON.parse(entry)));
    });
  }

  appendMessage(sessionKey: string, message: ChatMessage, keepLast: number): Promise<void> {
    return this.#call(async () => {
      const key = this.#key('h', sessionKey);
      await this.#redis.multi().rpush(key, JSON.stringify(message)).ltrim(key, -keepLast, -1).exec();
    });
  }

  acquireSessionLock(sessionKey: string, generationId: string, ttlMs: number): Promise<boolean> {
    return this.#call(async () => (await this.#redis.set(this.#key('lock', sessionKey), generationId, 'PX', ttlMs, 'NX')) === 'OK');
  }

  refreshSessionLock(sessionKey: string, generationId: string, ttlMs: number): Promise<boolean> {
    return this.#call(async () => (await this.#redis.eval(REFRESH, 1, this.#key('lock', sessionKey), generationId, ttlMs)) === 1);
  }

  releaseSessionLock(sessionKey: string, generationId: string): Promise<void> {
    return this.#call(async () => {
      await this.#redis.eval(RELEASE, 1, this.#key('lock', sessionKey), generationId);
    });
  }

  sessionLockHolder(sessionKey: string): Promise<string | undefined> {
    return this.#call(async () => (await this.#redis.get(this.#key('lock', sessionKey))) ?? undefined);
  }

  saveGeneration(record: GenerationRecord, ttlMs: number): Promise<void> {
    return this.#call(async () => {
      await this.#redis.set(this.#key('gen', record.id), JSON.stringify(record), 'PX', ttlMs);
    });
  }

  loadGeneration(generationId: string): Promise<GenerationRecord | undefined> {
    return this.#call(async () => {
      const raw = await this.#redis.get(this.#key('gen', generationId));
      return raw ? (JSON.parse(raw) as GenerationRecord) : undefined;
    });
  }

  // Every token of every running reply comes here: one XADD each cost the server about 15 µs more
  // CPU per event (a command object, a promise and a reply each, and their garbage). The events
  // asked for in one turn of the event loop go to Redis as one script call instead (which, like
  // every call, is refused once the store is closing).
  appendEvent(generationId: string, seq: number, event: StreamEvent): Promise<boolean> {
    return new Promise((resolve, reject) => {
      if (this.#appends.length === 0) setImmediate(this.#flushAppends);
      this.#appends.push({ key: this.#key('ev', generationId), id: `0-${seq}`, json: JSON.stringify(event), resolve, reject });
    });
  }

  readonly #flushAppends = (): void => {
    const all = this.#appends;
    this.#appends = [];
    for (let from = 0; from < all.length; from += MAX_APPEND_BATCH) void this.#appendBatch(all.slice(from, from + MAX_APPEND_BATCH));
  };

  async #appendBatch(batch: readonly PendingAppend[]): Promise<void> {
    try {
      const args: Array<string | number> = [batch.length];
      for (const a of batch) args.push(a.key);
      for (const a of batch) args.push(a.id, a.json);
      args.push(RUNNING_LOG_TTL_MS);
      const added = await this.#call(() => this.#redis.sluiceAppendEvents(...args));
      batch.forEach((a, i) => a.resolve(added[i] === 1));
    } catch (error) {
      for (const a of batch) a.reject(error);
    }
  }

  async readEvents(generationId: string, afterSeq: number, waitMs: number, signal?: AbortSignal): Promise<LoggedEvent[]> {
    const key = this.#key('ev', generationId);
    const now = await this.#call(() => this.#redis.xrange(key, `(0-${afterSeq}`, '+'));
    if (now.length > 0 || waitMs <= 0 || signal?.aborted) return now.map(toLogged);
    // Blocking reads tie up a connection, so they get one of their own.
    const reader = this.#idleReaders.pop() ?? this.#newReader();
    this.#busyReaders.add(reader);
    const onAbort = (): void => reader.disconnect();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const reply = await this.#call(() => reader.xread('BLOCK', waitMs, 'STREAMS', key, `0-${afterSeq}`));
      return reply?.[0]?.[1].map(toLogged) ?? [];
    } catch (error) {
      if (signal?.aborted) return [];
      throw error;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      this.#busyReaders.delete(reader);
      if (!signal?.aborted && !this.#closing && this.#idleReaders.length < BLOCKING_POOL_SIZE && reader.status === 'ready') {
        this.#idleReaders.push(reader);
      } else reader.disconnect();
    }
  }

  #newReader(): Redis {
    const reader = this.#redis.duplicate({ enableOfflineQueue: true, enableAutoPipelining: false });
    reader.on('error', noop);
    return reader;
  }

  expireGeneration(generationId: string, ttlMs: number): Promise<void> {
    return this.#call(async () => {
      await Promise.all([
        this.#redis.pexpire(this.#key('ev', generationId), Math.max(ttlMs, 1)),
        this.#redis.pexpire(this.#key('gen', generationId), Math.max(ttlMs, 1)),
        this.#redis.del(this.#key('alive', generationId), this.#key('ls', generationId)),
      ]);
    });
  }

  markAlive(generationId: string, ttlMs: number): Promise<void> {
    return this.#call(async () => {
      await this.#redis.set(this.#key('alive', generationId), '1', 'PX', ttlMs);
    });
  }

  clearAlive(generationId: string): Promise<void> {
    return this.#call(async () => {
      await this.#redis.del(this.#key('alive', generationId));
    });
  }

  isAlive(generationId: string): Promise<boolean> {
    return this.#call(async () => (await this.#redis.exists(this.#key('alive', generationId))) === 1);
  }

  touchListener(generationId: string, listenerId: string, ttlMs: number): Promise<void> {
    return this.#call(async () => {
      const key = this.#key('ls', generationId);
      await Promise.all([this.#redis.zadd(key, Date.now() + ttlMs, listenerId), this.#redis.pexpire(key, ttlMs * 2)]);
    });
  }

  dropListener(generationId: string, listenerId: string): Promise<void> {
    return this.#call(async () => {
      await this.#redis.zrem(this.#key('ls', generationId), listenerId);
    });
  }

  countListeners(generationId: string): Promise<number> {
    return this.#call(async () => {
      const key = this.#key('ls', generationId);
      await this.#redis.zremrangebyscore(key, '-inf', Date.now());
      return this.#redis.zcard(key);
    });
  }

  hitWindow(key: string, windowMs: number): Promise<{ count: number; resetInMs: number }> {
    return this.#call(async () => {
      const [count, pttl] = (await this.#redis.eval(HIT_WINDOW, 1, this.#key('rl', key), windowMs)) as [number, number];
      return { count, resetInMs: pttl > 0 ? pttl : windowMs };
    });
  }

  acquireSlot(key: string, member: string, limit: number, ttlMs: number): Promise<boolean> {
    return this.#call(async () => {
      const now = Date.now();
      const ok = await this.#redis.eval(ACQUIRE_SLOT, 1, this.#key('slot', key), now, member, limit, now + ttlMs, ttlMs * 2);
      return ok === 1;
    });
  }

  refreshSlot(key: string, member: string, ttlMs: number): Promise<void> {
    return this.#call(async () => {
      await this.#redis.zadd(this.#key('slot', key), 'XX', Date.now() + ttlMs, member);
      await this.#redis.pexpire(this.#key('slot', key), ttlMs * 2);
    });
  }

  releaseSlot(key: string, member: string): Promise<void> {
    return this.#call(async () => {
      await this.#redis.zrem(this.#key('slot', key), member);
    });
  }

  publishCancel(generationId: string): Promise<void> {
    return this.#call(async () => {
      await this.#redis.publish(this.#key('cancel'), generationId);
    });
  }

  onCancel(handler: (generationId: string) => void): () => void {
    this.#cancelHandlers.add(handler);
    return () => this.#cancelHandlers.delete(handler);
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
      this.#cancelHandlers.clear();
      for (const reader of [...this.#idleReaders, ...this.#busyReaders]) reader.disconnect();
      this.#idleReaders.length = 0;
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

function toLogged([id, fields]: [string, string[]]): LoggedEvent {
  const seq = Number(id.slice(id.indexOf('-') + 1));
  return { seq, event: StreamEvent.parse(JSON.parse(fields[1]!)) };
}
