import type { Logger } from 'pino';
import postgres from 'postgres';
import { PostgresSoleLock } from './postgres-sole-lock.ts';
import { postgresTarget } from './postgres-url.ts';
import { SluiceError } from '../../errors.ts';
import { MIGRATIONS } from './sql/migrations/index.ts';
import * as sql from './sql/operations.ts';
import { SqlHistory } from './sql/sql-history.ts';
import type { QueuedWrite } from './sql/write-queue.ts';
import { within } from '../../../../shared/within.ts';

export interface PostgresHistoryOptions {
  /** `postgres://` or `postgresql://` (TLS and the rest as URL parameters, e.g. `?sslmode=require`). */
  readonly url: string;
  readonly logger: Logger;
  /** Epoch ms, for the sessions' last-touched times. Default: Date.now. */
  readonly clock?: () => number;
  /** Connections at most: one for the writer, the rest for reads. Default 10. */
  readonly maxConnections?: number;
  /**
   * This instance's live state is its own (no Redis): it finds out whether it is alone on the
   * database (see PostgresSoleLock, and `aloneAtStart`). One more connection, held for the store's life.
   */
  readonly soleInstance?: boolean;
  /** How long one statement may wait (behind a lock, say) before PostgreSQL cancels it. Default 10,000 ms. */
  readonly statementTimeoutMs?: number;
}

type Sql = postgres.Sql;

// The one lock every migrating instance takes: a second instance waits, then finds the work done.
const MIGRATION_LOCK = { sql: 'SELECT pg_advisory_xact_lock(hashtext($1))', params: ['sluice history migrations'] };
// Taken by a turn that makes a session under a limit on sessions, until its transaction ends: the
// count of another instance's new session waits, then sees this one's. One lock for every owner,
// not one each: a batch makes the new sessions of several owners, in the order they came, and two
// instances taking two owners' locks in opposite orders would wait on each other (a deadlock, a
// second's stall); new sessions are a small part of the writes. Two keys (a class and 0), a
// space apart from the migrations' one-key lock.
const OWNER_LOCK = `SELECT pg_advisory_xact_lock(hashtext('sluice sessions'), 0)`;
// PostgreSQL errors of one write, not of the connection: a constraint (23...), a deadlock or
// serialization failure (40...). Only these make retrying a failed batch's writes one by one worthwhile.
const ONE_WRITE = /^(23|40)[0-9A-Z]{3}$/;
const DEFAULT_STATEMENT_TIMEOUT_MS = 10_000;
/** Closing: how long the queued writes may take, then how long the statements under way (seconds). */
const CLOSE_GRACE_MS = 1000;
const CLOSE_TIMEOUT_S = 2;
/** SQLSTATE read_only_sql_transaction: "cannot execute INSERT in a read-only transaction". */
const READ_ONLY = '25006';

/**
 * History in PostgreSQL, for fleets: every instance reads and writes the same tables. The schema
 * is created and migrated on open (versioned, under an advisory lock). Each instance has one
 * writer, batching the writes of a turn of the event loop into one transaction (pipelined across
 * sessions); reads use the rest of the pool.
 */
export class PostgresHistory extends SqlHistory {
  /** One connection, so that statements are prepared once and a batch's queries pipeline on it. */
  #writer: Sql;
  #readers: Sql;
  readonly #connect: (max: number) => Sql;
  readonly #maxConnections: number;
  #sole: PostgresSoleLock | undefined;
  protected override readonly ownerLock = (): sql.Step => ({ sql: OWNER_LOCK, params: [] });

  /** With `soleInstance`: no other instance without Redis used the database when this one opened it. */
  get aloneAtStart(): boolean {
    return this.#sole?.heldAtStart ?? false;
  }

  private constructor(connect: (max: number) => Sql, maxConnections: number, options: PostgresHistoryOptions, statementTimeoutMs: number) {
    // Each write has one statement in flight: a batch stays under postgres.js's pipeline limit
    // (100), past which a transaction's queries go one round trip at a time.
    // A write waits for those before it at most as long as a statement may wait: answered within twice that.
    super({ logger: options.logger, clock: options.clock, maxBatch: 64, maxWaitMs: statementTimeoutMs });
    this.#connect = connect;
    this.#maxConnections = maxConnections;
    this.#writer = connect(1);
    this.#readers = connect(maxConnections - 1);
  }

  protected async runBatch(writes: readonly QueuedWrite[]): Promise<unknown[]> {
    const writer = this.#writer;
    try {
      return await writer.begin<unknown[]>((tx) => pipelined(tx, writes));
    } catch (error) {
      if ((error as { code?: unknown }).code === READ_ONLY && this.#writer === writer) this.#reconnect();
      throw error;
    }
  }

  /**
   * A server that refuses writes as read-only (a primary demoted or made read-only in a failover)
   * refuses them on these connections for good, while the address they were made to may lead to
   * the new primary now: new connections, for the writes and the reads (the old server's history
   * is no longer kept up to date). A busy writer is never idle long enough for the pool to do it.
   */
  #reconnect(): void {
    const old = [this.#writer, this.#readers];
    this.#writer = this.#connect(1);
    this.#readers = this.#connect(this.#maxConnections - 1);
    this.logger.warn('PostgreSQL refused a write as read-only (a failover?): reconnecting');
    for (const sql of old) void sql.end({ timeout: 5 }).catch(() => undefined);
  }

  protected isOneWriteError(error: unknown): boolean {
    return ONE_WRITE.test(String((error as { code?: unknown }).code));
  }

  protected readRows(step: sql.Step): Promise<sql.Row[]> {
    // statement_timeout is the server's to enforce: a server that stopped answering (frozen, or a
    // network that drops packets) would hold the request for as long as it lasts.
    return within(exec(this.#readers, step), READ_TIMEOUT_MS, () => {
      throw new SluiceError('unavailable', 'The history store did not answer in time');
    });
  }

  protected ping(): Promise<boolean> {
    const answered = this.#readers`SELECT 1`.then(
      () => true,
      () => false,
    );
    return within(answered, PING_TIMEOUT_MS, () => false);
  }

  protected override closeGraceMs(): number {
    return CLOSE_GRACE_MS;
  }

  protected async closeConnections(): Promise<void> {
    await Promise.all([this.#writer.end({ timeout: CLOSE_TIMEOUT_S }), this.#readers.end({ timeout: CLOSE_TIMEOUT_S }), this.#sole?.close(CLOSE_TIMEOUT_S)]);
  }

  /** Connects and brings the schema up to date (safe when several instances start together). */
  static async open(options: PostgresHistoryOptions): Promise<PostgresHistory> {
    const target = postgresTarget(options.url);
    const { url, where } = target;
    const maxConnections = options.maxConnections ?? 10;
    if (!Number.isInteger(maxConnections) || maxConnections < 2) {
      throw new SluiceError('internal', `PostgresHistory: maxConnections must be an integer of at least 2, got ${maxConnections}`);
    }
    const statementTimeoutMs = options.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS;
    if (!Number.isInteger(statementTimeoutMs) || statementTimeoutMs < 1) {
      throw new SluiceError('internal', `PostgresHistory: statementTimeoutMs must be a positive integer, got ${statementTimeoutMs}`);
    }
    const connect = (max: number): Sql =>
      postgres(url, {
        ...target.options,
        max,
        connect_timeout: 5,
        idle_timeout: 60,
        // The driver waits 3^n/100 s (up to 20 s) after the nth failed connection in a row: after an
        // outage of a few seconds, during which every second brought a checkpoint, the instance
        // would stay away from a PostgreSQL that is back. At most a second instead.
        backoff: (attempt: number) => Math.min(0.05 * 2 ** attempt, 1),
        // Migrations' notices ("relation already exists, skipping") are not news.
        onnotice: () => undefined,
        // A write stuck behind a lock would hold up the instance's one writer: give up on it instead.
        connection: { application_name: 'sluice', statement_timeout: statementTimeoutMs },
      });
    const sole = options.soleInstance ? await PostgresSoleLock.take(target, options.logger) : undefined;
    const history = new PostgresHistory(connect, maxConnections, options, statementTimeoutMs);
    history.#sole = sole;
    const writer = history.#writer;
    const readers = history.#readers;
    try {
      const result = await writer.begin(async (tx) => {
        // A migration may take longer than a write may; waiting for another instance's too.
        await tx.unsafe('SET LOCAL statement_timeout = 0');
        return drive(tx, sql.migrate(MIGRATIONS, 'postgres', history.clock(), [MIGRATION_LOCK]));
      });
      sql.logMigration(result, MIGRATIONS, options.logger, where);
      return history;
    } catch (error) {
      await Promise.all([writer.end({ timeout: 1 }), readers.end({ timeout: 1 }), sole?.close()]);
      throw new SluiceError('unavailable', `Cannot open the history database at ${where}`, { cause: error });
    }
  }
}

async function exec(client: Sql | postgres.TransactionSql, step: sql.Step): Promise<sql.Row[]> {
  // Statements with parameters are the same few, over and over: prepared once per connection.
  return client.unsafe(step.sql, step.params as postgres.ParameterOrJSON<never>[], { prepare: step.params.length > 0 });
}

/**
 * Runs a batch's writes so that those of different sessions go side by side: their statements
 * share round trips (postgres.js sends the queries of one tick together), where one after the
 * other each statement would wait for its own. Writes of one session stay in call order; a write
 * of many sessions (a retention sweep) runs alone, in its place.
 */
async function pipelined(tx: postgres.TransactionSql, writes: readonly QueuedWrite[]): Promise<unknown[]> {
  const results: unknown[] = new Array(writes.length);
  let lanes = new Map<string, Promise<void>>();
  const settle = async (): Promise<void> => {
    const outcomes = await Promise.allSettled(lanes.values());
    lanes = new Map();
    const failed = outcomes.find((o) => o.status === 'rejected');
    if (failed) throw failed.reason;
  };
  for (const [i, write] of writes.entries()) {
    if (write.session === undefined) {
      await settle();
      results[i] = await drive(tx, write.make());
      continue;
    }
    const before = lanes.get(write.session) ?? Promise.resolve();
    lanes.set(
      write.session,
      before.then(async () => {
        results[i] = await drive(tx, write.make());
      }),
    );
  }
  await settle();
  return results;
}

async function drive<T>(tx: postgres.TransactionSql, op: sql.Op<T>): Promise<T> {
  let next = op.next();
  while (!next.done) next = op.next(await exec(tx, next.value));
  return next.value;
}

/** A read of history, or the health check's query, that takes longer than this answers unavailable. */
const READ_TIMEOUT_MS = 5000;
const PING_TIMEOUT_MS = 2000;
