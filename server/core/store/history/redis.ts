import type { Logger } from 'pino';
import { ChatMessage } from '../../../../shared/messages.ts';
import {
  checkKeepLast,
  checkMaxSessions,
  checkReadOptions,
  MAX_SEQ,
  ownerOfSessionKey,
  tooManySessions,
  type AppendOptions,
  type BeginOptions,
  type History,
  type HistoryMessage,
  type ReadOptions,
} from '../history.ts';
import { SluiceError } from '../../errors.ts';
import type { RedisConnection, Scripted } from '../redis/connection.ts';
import { isoTime } from '../../iso-time.ts';

export interface RedisHistoryOptions {
  /** Epoch ms, for the sessions' last-touched times. Default: Date.now. */
  readonly clock?: () => number;
  /**
   * A session's keys expire this long after it was last written (0: never), so that Redis holds no
   * history without bound even when nothing sweeps it (retention deletes idle sessions sooner).
   */
  readonly idleTtlMs?: number;
  readonly logger: Logger;
  /**
   * Whether each owner's sessions are kept in a set of their own, for BeginOptions.maxSessions
   * (default true). Without a limit they cost each turn a round trip and a set per owner that
   * nothing reads (without keys, one set of every session, on one Cluster shard).
   */
  readonly countsOwners?: boolean;
}

/** Sessions swept per round trip. */
const SWEEP_BATCH = 200;
/** history-admit.lua's answers. */
const REFUSED = 0;
const ADDED = 2;

/**
 * History in Redis: a session's messages in a sorted set scored by position, its reply ids in a
 * hash, its position counter in a key (all three under one hash tag, so that a session's scripts
 * run on one Cluster shard), every session's last touch in one sorted set, for retention, and each
 * owner's sessions in a sorted set of its own (by their last turn's start), for the limit on them.
 */
export class RedisHistory implements History {
  readonly #c: RedisConnection;
  readonly #clock: () => number;
  readonly #ttlMs: number;
  readonly #logger: Logger;
  readonly #touched: string;
  readonly #countsOwners: boolean;
  readonly #pending = new Set<Promise<unknown>>();
  #closed = false;

  constructor(connection: RedisConnection, options: RedisHistoryOptions) {
    const ttl = options.idleTtlMs ?? 0;
    if (!Number.isInteger(ttl) || ttl < 0) throw new RangeError(`RedisHistory: idleTtlMs must be a non-negative integer, got ${ttl}`);
    this.#c = connection;
    this.#clock = options.clock ?? Date.now;
    this.#ttlMs = ttl;
    this.#logger = options.logger;
    this.#touched = connection.key('history-touched');
    this.#countsOwners = options.countsOwners ?? true;
  }

  #keys(sessionKey: string): [string, string, string] {
    const tag = `{${sessionKey}}`;
    return [this.#c.key('hm', tag), this.#c.key('hr', tag), this.#c.key('hn', tag)];
  }

  /** The owner's sessions: a key of its own (on a Cluster, most likely another shard than the session's). */
  #ownerKey(sessionKey: string): string {
    return this.#c.key('ho', `{${ownerOfSessionKey(sessionKey)}}`);
  }

  async read(sessionKey: string, options?: ReadOptions): Promise<HistoryMessage[]> {
    const { limit, before } = checkReadOptions(options);
    return this.#run(() => this.#read(sessionKey, limit, before));
  }

  async #read(sessionKey: string, limit: number, before: number): Promise<HistoryMessage[]> {
    const [messages] = this.#keys(sessionKey);
    const raw = await this.#c.call((redis) =>
      before >= MAX_SEQ ? redis.zrevrange(messages, 0, limit - 1) : redis.zrevrangebyscore(messages, `(${before}`, '-inf', 'LIMIT', 0, limit),
    );
    const out: HistoryMessage[] = [];
    for (let i = raw.length - 1; i >= 0; i--) {
      const message = this.#parse(sessionKey, raw[i]!);
      if (message) out.push(message);
    }
    return out;
  }

  async append(sessionKey: string, message: ChatMessage, options: AppendOptions): Promise<number> {
    const keepLast = checkKeepLast(options.keepLast);
    const { seq: _ignored, ...stored } = message;
    // A turn's messages outlive a failover (when replicas are waited for): nothing the client saw
    // stored (the user's message, the reply it read to the end) goes missing from history.
    return this.#run(() =>
      this.#c.write(async (redis) => {
        const at = (await redis.historyAppend(
          ...this.#keys(sessionKey),
          JSON.stringify(stored),
          keepLast,
          options.replyId ?? '',
          this.#ttlMs,
          message.status,
        )) as number;
        await this.#touch(redis, sessionKey);
        return at;
      }, true),
    );
  }

  async begin(sessionKey: string, message: ChatMessage, options: BeginOptions): Promise<number> {
    const keepLast = checkKeepLast(options.keepLast);
    const limit = checkMaxSessions(options.maxSessions);
    if (!this.#countsOwners) {
      if (limit > 0) throw new RangeError('RedisHistory.begin: maxSessions needs an instance that countsOwners');
      const [seq] = await Promise.all([this.append(sessionKey, message, { keepLast }), this.checkpoint(sessionKey, options.replyId, '')]);
      return seq;
    }
    // The owner's set first (a script: its count and its new member are one step), then the turn.
    const admitted = await this.#run(() => this.#admit(sessionKey, limit));
    if (admitted === REFUSED) throw tooManySessions(limit);
    try {
      // Sent together on the one connection, so they run in this order.
      const [seq] = await Promise.all([this.append(sessionKey, message, { keepLast }), this.checkpoint(sessionKey, options.replyId, '')]);
      return seq;
    } catch (error) {
      // A session that the turn would have made holds no place (best effort: else it goes with the
      // idle TTL, or when the session is deleted); one that it made all the same (a write whose
      // answer was lost) keeps it.
      if (admitted === ADDED) {
        await this.#run(() =>
          this.#c.call(async (redis) => {
            if ((await redis.exists(this.#keys(sessionKey)[2])) === 0) await redis.zrem(this.#ownerKey(sessionKey), sessionKey);
          }),
        ).catch(() => undefined);
      }
      throw error;
    }
  }

  /** history-admit.lua for the session; a session that is not in its owner's set but exists is added to it, never refused. */
  #admit(sessionKey: string, limit: number): Promise<number> {
    const owner = this.#ownerKey(sessionKey);
    const now = this.#clock();
    // In order with the turn's writes (the same connection).
    return this.#c.write(async (redis) => {
      const admitted = Number(await redis.historyAdmit(owner, sessionKey, now, limit, this.#ttlMs));
      if (admitted !== REFUSED) return admitted;
      // Sessions are in their owner's set from their first turn on; not one a release before this
      // made, nor one a reply's last message made again after its deletion (until its next turn: now).
      if ((await redis.exists(this.#keys(sessionKey)[2])) === 0) return REFUSED;
      return Number(await redis.historyAdmit(owner, sessionKey, now, 0, this.#ttlMs));
    }, false);
  }

  checkpoint(sessionKey: string, replyId: string, text: string): Promise<void> {
    const draft: ChatMessage = { role: 'assistant', content: text, status: 'interrupted', createdAt: isoTime(this.#clock()) };
    // Drafts are written in order with the messages (the place a reply reserves comes after its
    // user's message), without waiting for replicas: the final message replaces them.
    return this.#run(() =>
      this.#c.write(async (redis) => {
        const created = await redis.historyCheckpoint(...this.#keys(sessionKey), replyId, text, JSON.stringify(draft), this.#ttlMs);
        if (created === 1) await this.#touch(redis, sessionKey);
      }, false),
    );
  }

  /**
   * The session's last touch, for retention, and its place in its owner's set: a session made by a
   * write that is no turn's start (a reply's last message after its session was deleted) counts
   * as one made by a turn (never refused: what a reply said is kept).
   */
  async #touch(redis: Scripted, sessionKey: string): Promise<void> {
    const now = this.#clock();
    if (!this.#countsOwners) {
      await redis.zadd(this.#touched, now, sessionKey);
      return;
    }
    const owner = this.#ownerKey(sessionKey);
    await Promise.all([
      redis.zadd(this.#touched, now, sessionKey),
      redis.zadd(owner, now, sessionKey),
      this.#ttlMs > 0 ? redis.pexpire(owner, this.#ttlMs) : undefined,
    ]);
  }

  deleteSession(sessionKey: string): Promise<boolean> {
    return this.#run(() => this.#delete(sessionKey, true));
  }

  /** Deletes a session's keys (one hash tag: one slot), its last touch and its place in its owner's set; `replicated`: see RedisConnection.write. */
  #delete(sessionKey: string, replicated: boolean): Promise<boolean> {
    return this.#c.write(async (redis) => {
      const [deleted] = await Promise.all([
        redis.del(...this.#keys(sessionKey)),
        redis.zrem(this.#touched, sessionKey),
        // Whether or not this instance counts owners: one that does may share this Redis.
        redis.zrem(this.#ownerKey(sessionKey), sessionKey),
      ]);
      return deleted > 0;
    }, replicated);
  }

  expireIdle(cutoff: number): Promise<number> {
    return this.#run(() => this.#expireIdle(cutoff));
  }

  async #expireIdle(cutoff: number): Promise<number> {
    // The first sweep runs as the server starts, which may be before a cluster is ready.
    await this.#c.ready(5_000);
    let deleted = 0;
    for (;;) {
      const idle = await this.#c.call((redis) => redis.zrangebyscore(this.#touched, '-inf', `(${cutoff}`, 'LIMIT', 0, SWEEP_BATCH));
      for (const sessionKey of idle) if (await this.#delete(sessionKey, false)) deleted++;
      if (idle.length < SWEEP_BATCH) return deleted;
    }
  }

  async healthy(): Promise<boolean> {
    return !this.#closed && (await this.#c.healthy());
  }

  /** Waits for the calls under way, then refuses new ones (the connection belongs to the store, which closes it). */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled([...this.#pending]);
  }

  /** Runs a call unless the history is closed, and keeps it until it settles (see close). */
  #run<T>(call: () => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(new SluiceError('unavailable', 'The history store is closed'));
    const running = call();
    this.#pending.add(running);
    void running.then(
      () => this.#pending.delete(running),
      () => this.#pending.delete(running),
    );
    return running;
  }

  /** A stored member back as a message; a corrupt one is skipped (and logged), never fatal to the session. */
  #parse(sessionKey: string, member: string): HistoryMessage | undefined {
    const match = /^(\d+)\|([df])\|([^|]*)\|/.exec(member);
    let parsed: ReturnType<typeof ChatMessage.safeParse> | undefined;
    if (match) {
      try {
        parsed = ChatMessage.safeParse(JSON.parse(member.slice(match[0].length)));
      } catch {
        parsed = undefined;
      }
    }
    if (!match || !parsed?.success) {
      this.#logger.warn({ sessionKey, entry: member.slice(0, 200) }, 'skipped a corrupt history entry');
      return undefined;
    }
    const { seq: _stored, ...message } = parsed.data;
    return { ...message, seq: Number(match[1]), ...(match[2] === 'd' ? { draftOf: match[3] } : {}) };
  }
}
