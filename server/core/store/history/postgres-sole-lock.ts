import type { Logger } from 'pino';
import postgres from 'postgres';
import { SluiceError } from '../../errors.ts';

// The key every instance without shared live state takes; instances with Redis never take it.
const KEY = 'sluice sole instance';
/** How often a lock lost with its connection (PostgreSQL restarted) is asked for again. */
const RETAKE_MS = 1000;

/**
 * Keeps a database to one Sluice whose live state is its own (no Redis): a session-level advisory
 * lock, held on a connection of its own for the instance's life. Two such instances on one
 * database would each lock sessions only for themselves (two replies in one session), and each
 * would end the other's running replies as a crash's on start.
 */
export class PostgresSoleLock {
  readonly #sql: postgres.Sql;
  readonly #logger: Logger;
  #closed = false;
  #retake: NodeJS.Timeout | undefined;

  private constructor(sql: postgres.Sql, logger: Logger) {
    this.#sql = sql;
    this.#logger = logger;
  }

  /** Takes the lock, or fails (SluiceError 'unavailable', naming the problem) when another instance holds it. */
  static async take(url: string, where: string, logger: Logger): Promise<PostgresSoleLock> {
    let lock: PostgresSoleLock | undefined = undefined;
    const sql = postgres(url, {
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
    const taken = await PostgresSoleLock.#ask(sql).catch(async (error: unknown) => {
      await sql.end({ timeout: 1 });
      throw new SluiceError('unavailable', `Cannot open the history database at ${where}`, { cause: error });
    });
    if (!taken) {
      await sql.end({ timeout: 1 });
      throw new SluiceError(
        'unavailable',
        `The history database at ${where} is in use by another Sluice without Redis (one instance per database without Redis; set REDIS_URL to run several)`,
      );
    }
    lock = new PostgresSoleLock(sql, logger);
    return lock;
  }

  static async #ask(sql: postgres.Sql): Promise<boolean> {
    const [row] = await sql<Array<{ taken: boolean }>>`SELECT pg_try_advisory_lock(hashtext(${KEY})) AS taken`;
    return row?.taken === true;
  }

  /** The connection went (PostgreSQL restarted, say), and the lock with it: asked for again until held. */
  #lost(): void {
    if (this.#closed || this.#retake) return;
    this.#retake = setTimeout(() => {
      this.#retake = undefined;
      if (this.#closed) return;
      PostgresSoleLock.#ask(this.#sql).then(
        (taken) => {
          if (!taken) this.#logger.error('another Sluice without Redis took this PostgreSQL database while its connection was down; stop one of them');
        },
        () => this.#lost(),
      );
    }, RETAKE_MS).unref();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#retake);
    await this.#sql.end({ timeout: 5 });
  }
}
