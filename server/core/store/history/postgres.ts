import type { Logger } from 'pino';
import postgres from 'postgres';
import type { ChatMessage } from '../../../../shared/messages.ts';
import { SluiceError } from '../../errors.ts';
import { checkKeepLast, checkReadOptions, type AppendOptions, type History, type HistoryMessage, type ReadOptions } from '../history.ts';
import { MIGRATIONS } from './sql/migrations/index.ts';
import * as sql from './sql/operations.ts';
import { draftKey, unavailable, WriteQueue } from './sql/write-queue.ts';

export interface PostgresHistoryOptions {
  /** `postgres://` or `postgresql://` (TLS and the rest as URL parameters, e.g. `?sslmode=require`). */
  readonly url: string;
  readonly logger: Logger;
  /** Epoch ms, for the sessions' last-touched times. Default: Date.now. */
  readonly clock?: () => number;
  /** Connections at most (one of them the writer's). Default 10. */
  readonly maxConnections?: number;
}

type Sql = postgres.Sql;

/** Idle sessions deleted per transaction, so that a large sweep holds no lock for long. */
const EXPIRE_CHUNK = 500;
// The one lock every migrating instance takes: a second instance waits, then finds the work done.
const MIGRATION_LOCK = { sql: 'SELECT pg_advisory_xact_lock(hashtext($1))', params: ['sluice history migrations'] };
// PostgreSQL errors of one write, not of the connection: a constraint (23...), a deadlock or
// serialization failure (40...). Only these make retrying a failed batch's writes one by one worthwhile.
const ONE_WRITE = /^(23|40)[0-9A-Z]{3}$/;

/**
 * History in PostgreSQL, for fleets: every instance reads and writes the same tables. The schema
 * is created and migrated on open (versioned, under an advisory lock). Each instance has one
 * writer connection, batching the writes of a turn of the event loop into one transaction;
 * reads use the rest of the pool.
 */
export class PostgresHistory implements History {
  readonly #sql: Sql;
  readonly #clock: () => number;
  readonly #queue: WriteQueue;
  #closing: Promise<void> | undefined;

  private constructor(client: Sql, options: PostgresHistoryOptions) {
    this.#sql = client;
    this.#clock = options.clock ?? Date.now;
    this.#queue = new WriteQueue({
      run: (ops) => this.#sql.begin(async (tx) => {
        const results: unknown[] = [];
        for (const op of ops) results.push(await drive(tx, op()));
        return results;
      }) as Promise<unknown[]>,
      retryAlone: (error) => ONE_WRITE.test(String((error as { code?: unknown }).code)),
      logger: options.logger,
    });
  }

  /** Connects and brings the schema up to date (safe when several instances start together). */
  static async open(options: PostgresHistoryOptions): Promise<PostgresHistory> {
    const where = describe(options.url);
    const maxConnections = options.maxConnections ?? 10;
    if (!Number.isInteger(maxConnections) || maxConnections < 2) {
      throw new SluiceError('internal', `PostgresHistory: maxConnections must be an integer of at least 2, got ${maxConnections}`);
    }
    const client = postgres(options.url, {
      max: maxConnections,
      connect_timeout: 5,
      idle_timeout: 60,
      // Migrations' notices ("relation already exists, skipping") are not news.
      onnotice: () => undefined,
      // A write stuck behind a lock would hold up the instance's one writer: give up on it instead.
      connection: { application_name: 'sluice', statement_timeout: 10_000 },
    });
    const history = new PostgresHistory(client, options);
    try {
      const result = await client.begin(async (tx) => {
        // A migration may take longer than a write may; waiting for another instance's too.
        await tx.unsafe('SET LOCAL statement_timeout = 0');
        return drive(tx, sql.migrate(MIGRATIONS, history.#clock(), [MIGRATION_LOCK]));
      });
      if (result.applied.length > 0) options.logger.info({ database: where, applied: result.applied }, 'history: schema migrated');
      return history;
    } catch (error) {
      await client.end({ timeout: 1 });
      throw new SluiceError('unavailable', `Cannot open the history database at ${where}`, { cause: error });
    }
  }

  async read(sessionKey: string, options?: ReadOptions): Promise<HistoryMessage[]> {
    const { limit, before } = checkReadOptions(options);
    if (this.#closing) throw new SluiceError('unavailable', 'The history store is closed');
    try {
      return sql.toMessages(await exec(this.#sql, sql.readStep(sessionKey, limit, before)));
    } catch (error) {
      throw unavailable(error);
    }
  }

  async append(sessionKey: string, message: ChatMessage, options: AppendOptions): Promise<number> {
    const keepLast = checkKeepLast(options.keepLast);
    const { replyId } = options;
    const now = this.#clock();
    return this.#queue.push(() => sql.append(sessionKey, message, keepLast, replyId, now), { barrier: replyId && draftKey(sessionKey, replyId) });
  }

  checkpoint(sessionKey: string, replyId: string, text: string): Promise<void> {
    const now = this.#clock();
    return this.#queue.push(() => sql.checkpoint(sessionKey, replyId, text, now), { coalesce: draftKey(sessionKey, replyId) });
  }

  deleteSession(sessionKey: string): Promise<boolean> {
    return this.#queue.push(() => sql.deleteSession(sessionKey));
  }

  async expireIdle(cutoff: number): Promise<number> {
    let total = 0;
    for (;;) {
      const deleted = await this.#queue.push(() => sql.expireIdle(cutoff, EXPIRE_CHUNK));
      total += deleted;
      if (deleted < EXPIRE_CHUNK) return total;
    }
  }

  async healthy(): Promise<boolean> {
    if (this.#closing) return false;
    return this.#sql`SELECT 1`.then(
      () => true,
      () => false,
    );
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#queue.close();
      await this.#sql.end({ timeout: 5 });
    })();
    return this.#closing;
  }
}

async function exec(client: Sql | postgres.TransactionSql, step: sql.Step): Promise<sql.Row[]> {
  // Statements with parameters are the same few, over and over: prepared once per connection.
  return client.unsafe(step.sql, step.params as postgres.ParameterOrJSON<never>[], { prepare: step.params.length > 0 });
}

async function drive<T>(tx: postgres.TransactionSql, op: sql.Op<T>): Promise<T> {
  let next = op.next();
  while (!next.done) next = op.next(await exec(tx, next.value));
  return next.value;
}

/** The URL without its credentials, for messages and logs. */
function describe(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new SluiceError('internal', 'DATABASE_URL is not a valid URL');
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new SluiceError('internal', `DATABASE_URL must start with postgres:// or postgresql://, got ${parsed.protocol}//`);
  }
  return `${parsed.hostname}:${parsed.port || 5432}${parsed.pathname}`;
}
