import { StreamEvent } from '../../../../shared/stream-events.ts';
import { SluiceError } from '../../errors.ts';
import { CorruptLogError, type AppendResult, type EventLog, type EventWriter, type GenerationRecord, type LoggedEvent } from '../event-log.ts';
import type { RedisConnection, Scripted } from '../redis/connection.ts';

// A log has a lifetime even while running, so that one abandoned by a dead instance cannot stay forever.
const RUNNING_LOG_TTL_MS = 24 * 60 * 60 * 1000;
// Redis runs one script at a time: a batch stays short enough not to hold up other clients.
const MAX_APPEND_BATCH = 512;

interface PendingAppend {
  readonly key: string;
  readonly seq: number;
  readonly json: string;
  /** 'd' for a delta, 't' for a terminal event (nothing is appended after one). */
  readonly kind: 'd' | 't';
  /** Epoch ms after which it is not added (0: none). */
  readonly deadline: number;
  readonly resolve: (result: AppendResult) => void;
  readonly reject: (error: unknown) => void;
}

const RESULTS: readonly AppendResult[] = ['duplicate', 'added', 'gap', 'ended', 'expired'];
/** An append answered slower than this says too little of where Redis's clock stands (its error is half of it, within the generation's margin). */
const CLOCK_SAMPLE_MAX_MS = 200;

/**
 * Event logs in Redis Streams (entry ids `0-<seq>`), records in keys with expiry, listener presence
 * in sorted sets scored by expiry.
 */
export class RedisEventLog implements EventLog {
  readonly #c: RedisConnection;
  /** Events asked for in this turn of the event loop, written together at its end. */
  #appends: PendingAppend[] = [];
  /**
   * Redis's clock less this host's (ms), learnt from the append script's answers: a deadline, given
   * by this host's clock, is checked by Redis's. Unknown until an append is answered: until then
   * appends go without a deadline.
   */
  #clockOffset: number | undefined;

  readonly outageWaitMs: number | undefined;

  constructor(connection: RedisConnection, options: { readonly outageWaitMs?: number } = {}) {
    const wait = options.outageWaitMs;
    if (wait !== undefined && (!Number.isInteger(wait) || wait < 0))
      throw new RangeError(`RedisEventLog: outageWaitMs must be a non-negative integer, got ${wait}`);
    this.#c = connection;
    this.outageWaitMs = wait;
  }

  // A generation's keys share its hash tag: on a cluster they live on one shard.
  #key(kind: 'ev' | 'gen' | 'ls', generationId: string): string {
    return this.#c.key(kind, `{${generationId}}`);
  }

  async open(record: GenerationRecord, ttlMs: number): Promise<EventWriter> {
    // Replicated before the reply starts (when replicas are waited for): a failover then loses
    // neither the record other instances resume from nor what the start wrote before it (the
    // session lock, the liveness mark).
    const key = this.#key('gen', record.id);
    const json = JSON.stringify(record);
    const expiresAt = Date.now() + ttlMs;
    await this.#c.write((redis) => redis.set(key, json, 'PX', ttlMs), true);
    // A gap means the log lost events it had taken (a restart without persistence, a failover to
    // a replica that lacked them): the record went with them, and without it no other instance
    // finds the log its writer refills. It is written back (unless it is there) before the refill.
    const restore = (result: AppendResult): Promise<AppendResult> | AppendResult =>
      result !== 'gap'
        ? result
        : this.#c
            .call((redis) => redis.set(key, json, 'PX', Math.max(expiresAt - Date.now(), 1), 'NX'))
            .then(
              () => result,
              () => result,
            );
    return (seq, event, deadline) => this.append(record.id, seq, event, deadline).then(restore);
  }

  load(generationId: string): Promise<GenerationRecord | undefined> {
    return this.#c.call(async (redis) => {
      const raw = await redis.get(this.#key('gen', generationId));
      return raw ? (JSON.parse(raw) as GenerationRecord) : undefined;
    });
  }

  // Every token of every running reply comes here: one XADD each cost the server about 15 µs more
  // CPU per event (a command object, a promise and a reply each, and their garbage). The events
  // asked for in one turn of the event loop go to Redis as one script call instead (which, like
  // every call, is refused once the store is closing). On a cluster, one call per hash slot: a
  // script touches one slot there (a generation's log is in the slot of its id). Terminal events
  // are written apart when replicas are waited for: they end the reply, and must outlive a failover.
  append(generationId: string, seq: number, event: StreamEvent, deadline?: number): Promise<AppendResult> {
    return new Promise((resolve, reject) => {
      if (this.#appends.length === 0) setImmediate(this.#flushAppends);
      const kind = event.type === 'delta' ? 'd' : 't';
      this.#appends.push({ key: this.#key('ev', generationId), seq, json: JSON.stringify(event), kind, deadline: deadline ?? 0, resolve, reject });
    });
  }

  readonly #flushAppends = (): void => {
    const all = this.#appends;
    this.#appends = [];
    const groups = new Map<string, PendingAppend[]>();
    const apart = this.#c.waitsForReplicas;
    for (const append of all) {
      const group = `${apart && append.kind === 't' ? 't' : 'd'}${this.#c.scriptGroup(append.key)}`;
      let list = groups.get(group);
      if (!list) groups.set(group, (list = []));
      list.push(append);
    }
    for (const [group, list] of groups) {
      const terminal = group.startsWith('t');
      for (let from = 0; from < list.length; from += MAX_APPEND_BATCH) void this.#appendBatch(list.slice(from, from + MAX_APPEND_BATCH), terminal);
    }
  };

  async #appendBatch(batch: readonly PendingAppend[], terminal: boolean): Promise<void> {
    try {
      const keys = batch.map((a) => a.key);
      const args: Array<string | number> = [];
      const offset = this.#clockOffset;
      for (const a of batch) args.push(a.seq, a.json, a.kind, a.deadline > 0 && offset !== undefined ? Math.round(a.deadline + offset) : 0);
      args.push(RUNNING_LOG_TTL_MS, this.#c.announcesAppends ? '1' : '0');
      const run = (redis: Scripted): Promise<unknown> => this.#c.evalScript(redis, 'appendEvents', keys, args);
      const sentAt = Date.now();
      const results = (await (terminal ? this.#c.write(run, true) : this.#c.call(run))) as number[];
      const answeredAt = Date.now();
      const redisNow = results[batch.length];
      if (typeof redisNow === 'number' && answeredAt - sentAt <= CLOCK_SAMPLE_MAX_MS) this.#clockOffset = redisNow - (sentAt + answeredAt) / 2;
      batch.forEach((a, i) => a.resolve(RESULTS[results[i]!] ?? 'gap'));
    } catch (error) {
      for (const a of batch) a.reject(error);
    }
  }

  async read(generationId: string, afterSeq: number, waitMs: number, signal?: AbortSignal): Promise<LoggedEvent[]> {
    const key = this.#key('ev', generationId);
    const now = await this.#c.call((redis) => redis.xrange(key, `(0-${afterSeq}`, '+'));
    if (now.length > 0 || waitMs <= 0 || signal?.aborted) return toLogged(now);
    return toLogged(await this.#c.tail.wait(key, afterSeq, waitMs, signal));
  }

  holds(generationId: string, seq: number): Promise<boolean> {
    return this.#c.call(async (redis) => (await redis.xrange(this.#key('ev', generationId), `0-${seq}`, `0-${seq}`)).length === 1);
  }

  expire(generationId: string, ttlMs: number): Promise<void> {
    return this.#c.call(async (redis) => {
      await Promise.all([
        redis.pexpire(this.#key('ev', generationId), Math.max(ttlMs, 1)),
        redis.pexpire(this.#key('gen', generationId), Math.max(ttlMs, 1)),
        redis.del(this.#key('ls', generationId)),
      ]);
    });
  }

  touchListener(generationId: string, listenerId: string, ttlMs: number): Promise<void> {
    return this.#c.call(async (redis) => {
      const key = this.#key('ls', generationId);
      await Promise.all([redis.zadd(key, Date.now() + ttlMs, listenerId), redis.pexpire(key, ttlMs * 2)]);
    });
  }

  dropListener(generationId: string, listenerId: string): Promise<void> {
    return this.#c.call(async (redis) => {
      await redis.zrem(this.#key('ls', generationId), listenerId);
    });
  }

  countListeners(generationId: string): Promise<number> {
    return this.#c.call(async (redis) => {
      const key = this.#key('ls', generationId);
      await redis.zremrangebyscore(key, '-inf', Date.now());
      return redis.zcard(key);
    });
  }
}

/**
 * Stream entries as events, up to the first that is not one (a log mangled by hand, say): the
 * events before it are read; a read that starts at it fails with `unavailable`.
 */
function toLogged(entries: ReadonlyArray<[string, string[]]>): LoggedEvent[] {
  const out: LoggedEvent[] = [];
  for (const [id, fields] of entries) {
    let event: StreamEvent | undefined;
    try {
      const parsed = StreamEvent.safeParse(JSON.parse(fields[1] ?? ''));
      if (parsed.success) event = parsed.data;
    } catch {
      event = undefined;
    }
    if (!event) {
      if (out.length > 0) return out;
      throw new SluiceError('unavailable', 'The reply could not be read', { cause: new CorruptLogError(`corrupt event log entry ${id}`) });
    }
    out.push({ seq: Number(id.slice(id.indexOf('-') + 1)), event });
  }
  return out;
}
