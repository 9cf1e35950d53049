import type { Logger } from 'pino';
import postgres from 'postgres';
import type { PostgresTarget } from './postgres-url.ts';
import { SluiceError } from '../../errors.ts';

// The key every instance without shared live state takes; instances with Redis never take it.
const KEY = 'sluice sole instance';
/** How often a lock not held (another instance has it, or its connection went) is asked for again. */
const RETAKE_MS = 2000;
/** How often a lock this instance held, and lost with its connection, is asked for while PostgreSQL cannot be reached. */
const LOST_RETAKE_MS = 200;

/**
 * Tells an instance whose live state is its own (no Redis) whether it is alone on the database: a
 * session-level advisory lock, held on a connection of its own for the instance's life. Only an
 * instance that holds it when it starts may take the drafts it finds for a crash's (any other
 * could be a running reply of the holder: a deploy that starts the new instance before it stops
 * the old one). One that does not keeps asking, so that a third instance started later finds the
 * lock held. Starting is never refused: a deploy waiting for the new instance to be ready before
 * stopping the old one would wait forever.
 */
export class PostgresSoleLock {
  readonly #sql: postgres.Sql;
  /** Held when the instance started: the drafts it then found are a crash's. */
  readonly heldAtStart: boolean;
  #held: boolean;
  #closed = false;
  #retake: NodeJS.Timeout | undefined;

  private constructor(sql: postgres.Sql, logger: Logger, held: boolean) {
    this.#sql = sql;
    this.heldAtStart = held;
    this.#held = held;
    if (!held) {
      logger.warn(
        'another Sluice without Redis uses this PostgreSQL database: replies a crash left unfinished are left to it (to run several instances, give them a Redis)',
      );
      this.#schedule();
    }
  }

  static async take({ url, options, where }: PostgresTarget, logger: Logger): Promise<PostgresSoleLock> {
    let lock: PostgresSoleLock | undefined = undefined;
    const sql = postgres(url, {
      ...options,
      max: 1,
      connect_timeout: 5,
      // The lock lives as long as its connection: the driver must never retire it.
      idle_timeout: 0,
      max_lifetime: 0,
      onnotice: () => undefined,
      onclose: () => {
        if (lock) lock.#lost();
      },
      connection: { application_name: 'sluice-sole-instance' },
    });
    const held = await PostgresSoleLock.#ask(sql).catch(async (error: unknown) => {
      await sql.end({ timeout: 1 });
      throw new SluiceError('unavailable', `Cannot open the history database at ${where}`, { cause: error });
    });
    lock = new PostgresSoleLock(sql, logger, held);
    return lock;
  }

  static async #ask(sql: postgres.Sql): Promise<boolean> {
    const [row] = await sql<Array<{ taken: boolean }>>`SELECT pg_try_advisory_lock(hashtext(${KEY})) AS taken`;
    return row?.taken === true;
  }

  /**
   * The connection went (PostgreSQL restarted, or the connection was cut), and the lock with it:
   * asked for again at once, then often while it cannot be, since an instance starting meanwhile
   * would take it and end this one's running replies as a crash's.
   */
  #lost(): void {
    if (!this.#held) return;
    this.#held = false;
    clearTimeout(this.#retake);
    this.#retake = undefined;
    this.#schedule(0, LOST_RETAKE_MS);
  }

  /** Asks after `delayMs`; again after RETAKE_MS if another holds it, or `unreachedMs` if PostgreSQL did not answer. */
  #schedule(delayMs = RETAKE_MS, unreachedMs = RETAKE_MS): void {
    if (this.#closed || this.#retake) return;
    this.#retake = setTimeout(() => {
      this.#retake = undefined;
      if (this.#closed || this.#held) return;
      PostgresSoleLock.#ask(this.#sql).then(
        (taken) => {
          this.#held = taken;
          if (!taken) this.#schedule();
        },
        () => this.#schedule(unreachedMs, unreachedMs),
      );
    }, delayMs).unref();
  }

  /** Lets the lock go; past `timeoutSeconds` its connection is cut (a server that does not answer). */
  async close(timeoutSeconds = 5): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#retake);
    await this.#sql.end({ timeout: timeoutSeconds });
  }
}
