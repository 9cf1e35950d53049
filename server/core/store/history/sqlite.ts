import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type DatabaseSyncInstance, type StatementSyncInstance } from '@photostructure/sqlite';
import type { Logger } from 'pino';
import { SluiceError } from '../../errors.ts';
import { startCheckpointer, type Checkpointer } from './sqlite-checkpointer.ts';
import { MIGRATIONS } from './sql/migrations/index.ts';
import * as sql from './sql/operations.ts';
import { SqlHistory } from './sql/sql-history.ts';
import type { QueuedWrite } from './sql/write-queue.ts';

export interface SqliteHistoryOptions {
  /** The database file; its directory is created when missing. */
  readonly path: string;
  readonly logger: Logger;
  /** Epoch ms, for the sessions' last-touched times. Default: Date.now. */
  readonly clock?: () => number;
}

/** A prepared statement, and whether it returns rows (asked once: the answer crosses into native code). */
interface Prepared {
  readonly statement: StatementSyncInstance;
  readonly reader: boolean;
}

const CHECKPOINT_INTERVAL_MS = 1000;
/** How long a write waits for another connection's lock on the file. */
const BUSY_TIMEOUT_MS = 2000;
/** SQLite's primary result codes: the database is locked by another connection; a constraint failed (a duplicate key, say). */
const SQLITE_BUSY = 5;
const SQLITE_CONSTRAINT = 19;
/** WAL pages (4 KiB) past which the writer checkpoints by itself (SQLite's default: 1000). */
const BACKSTOP_PAGES = 16_384;

/**
 * History in an embedded SQLite database (the default store: durable, nothing to run). WAL
 * journal, one connection that is the only writer, writes batched into one transaction per turn
 * of the event loop, checkpoints in a worker thread. `synchronous=NORMAL`: a commit is in the WAL
 * when the call resolves, so a killed process loses nothing written; a power cut may lose the
 * last commits, never consistency.
 */
export class SqliteHistory extends SqlHistory {
  readonly #db: DatabaseSyncInstance;
  readonly #lock: DatabaseSyncInstance;
  readonly #statements = new Map<string, Prepared>();
  #checkpointer: Checkpointer | undefined;

  private constructor(db: DatabaseSyncInstance, lock: DatabaseSyncInstance, options: SqliteHistoryOptions) {
    // A batch runs on the event loop: 64 writes hold it about 3 ms (256: 12 ms), at the same throughput.
    // A write waits for those before it at most as long as one waits for another process's lock.
    super({ logger: options.logger, clock: options.clock, maxBatch: 64, maxWaitMs: BUSY_TIMEOUT_MS });
    this.#db = db;
    this.#lock = lock;
  }

  protected runBatch(writes: readonly QueuedWrite[]): unknown[] {
    return this.#transaction(() => writes.map((w) => this.#drive(w.make())));
  }

  protected isOneWriteError(error: unknown): boolean {
    return primaryCode(error) === SQLITE_CONSTRAINT;
  }

  protected readRows(step: sql.Step): sql.Row[] {
    return this.#exec(step);
  }

  protected ping(): boolean {
    return this.#db.isOpen;
  }

  protected async closeConnections(): Promise<void> {
    await this.#checkpointer?.close();
    // history.db alone (an offline backup's copy) must hold the latest writes even if a close
    // left the WAL beside it (another connection on the file, say): the WAL is folded in and WAL
    // mode left, which removes it (open sets WAL again).
    try {
      this.#db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
      this.#db.exec('PRAGMA journal_mode = DELETE');
    } catch (error) {
      this.logger.warn({ err: error }, 'history: could not fold the WAL into the database on close (another process has it open?)');
    }
    this.#db.close();
    this.#lock.close();
  }

  /** Opens (creating) the database and brings its schema up to date. */
  static async open(options: SqliteHistoryOptions): Promise<SqliteHistory> {
    if (!options.path) throw new SluiceError('internal', 'SqliteHistory: path is required');
    let db: DatabaseSyncInstance;
    try {
      mkdirSync(dirname(options.path), { recursive: true });
    } catch (error) {
      throw new SluiceError('unavailable', `Cannot open the history database at ${options.path}`, { cause: error });
    }
    const lock = takeLock(options.path);
    try {
      db = new DatabaseSync(options.path);
    } catch (error) {
      lock.close();
      throw new SluiceError('unavailable', `Cannot open the history database at ${options.path}`, { cause: error });
    }
    try {
      // Another process on the file (a backup, say) makes the writer wait rather than fail at once;
      // not for long, since it waits on the event loop.
      db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
      const { journal_mode: mode } = db.prepare('PRAGMA journal_mode = WAL').get() as { journal_mode: string };
      if (mode !== 'wal') throw new Error(`SQLite refused WAL mode (journal_mode is ${mode})`);
      db.exec('PRAGMA synchronous = NORMAL');
      db.exec('PRAGMA foreign_keys = ON');
      const history = new SqliteHistory(db, lock, options);
      const result = history.#transaction(() => history.#drive(sql.migrate(MIGRATIONS, 'sqlite', history.clock())));
      sql.logMigration(result, MIGRATIONS, options.logger, options.path);
      // The checkpointer keeps the WAL short; the writer steps in only if it falls far behind.
      db.exec(`PRAGMA wal_autocheckpoint = ${BACKSTOP_PAGES}`);
      history.#checkpointer = startCheckpointer(options.path, CHECKPOINT_INTERVAL_MS, options.logger, {
        onFailure: () => db.isOpen && db.exec('PRAGMA wal_autocheckpoint = 1000'),
        onRecovery: () => db.isOpen && db.exec(`PRAGMA wal_autocheckpoint = ${BACKSTOP_PAGES}`),
      });
      return history;
    } catch (error) {
      db.close();
      lock.close();
      throw new SluiceError('unavailable', `Cannot open the history database at ${options.path}`, { cause: error });
    }
  }

  /** Runs `fn` in one IMMEDIATE transaction (the write lock taken at once, so no upgrade can fail midway). */
  #transaction<T>(fn: () => T): T {
    this.#db.exec('BEGIN IMMEDIATE');
    try {
      const result = fn();
      this.#db.exec('COMMIT');
      return result;
    } catch (error) {
      // SQLite may have rolled back already (a full disk, say); then there is nothing to undo.
      if (this.#db.isTransaction) this.#db.exec('ROLLBACK');
      throw error;
    }
  }

  #drive<T>(op: sql.Op<T>): T {
    let next = op.next();
    while (!next.done) next = op.next(this.#exec(next.value));
    return next.value;
  }

  #exec(step: sql.Step): sql.Row[] {
    let prepared = this.#statements.get(step.sql);
    if (!prepared) {
      const statement = this.#db.prepare(step.sql.replace(/\$(\d+)/g, '?$1'));
      prepared = { statement, reader: statement.columns().length > 0 };
      this.#statements.set(step.sql, prepared);
    }
    // One that returns at most one row is fetched alone: get() builds no array.
    if (prepared.reader && step.one) {
      const row = prepared.statement.get(...step.params) as sql.Row | undefined;
      return row ? [row] : [];
    }
    if (prepared.reader) return prepared.statement.all(...step.params) as sql.Row[];
    prepared.statement.run(...step.params);
    return [];
  }
}

/**
 * One process per database: its start-up ends the drafts it finds as a crash's (crashed-drafts.ts),
 * which would end another process's running replies. The lock is SQLite's own on a file beside the
 * database, held from open to close; the system lets it go with a process that dies.
 */
function takeLock(path: string): DatabaseSyncInstance {
  let lock: DatabaseSyncInstance;
  try {
    lock = new DatabaseSync(`${path}.lock`);
  } catch (error) {
    throw new SluiceError('unavailable', `Cannot open the history database's lock at ${path}.lock`, { cause: error });
  }
  try {
    lock.exec('PRAGMA busy_timeout = 0');
    lock.exec('PRAGMA locking_mode = EXCLUSIVE');
    lock.exec('BEGIN EXCLUSIVE');
    return lock;
  } catch (error) {
    lock.close();
    // Busy is another process holding it; anything else (a read-only directory, say) is its own reason.
    if (primaryCode(error) === SQLITE_BUSY) {
      throw new SluiceError('unavailable', `The history database at ${path} is in use by another Sluice (one instance per DATA_DIR)`, { cause: error });
    }
    throw new SluiceError('unavailable', `Cannot take the history database's lock at ${path}.lock`, { cause: error });
  }
}

/** SQLite's primary result code of a driver error (the low byte of its extended code), if it has one. */
function primaryCode(error: unknown): number | undefined {
  const code = (error as { errcode?: unknown }).errcode;
  return typeof code === 'number' ? code & 0xff : undefined;
}
