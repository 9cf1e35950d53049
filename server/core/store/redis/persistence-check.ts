import type { Logger } from 'pino';
import type { RedisConnection } from './connection.ts';

/**
 * Says, once Redis answers, whether the history it holds survives Redis's own restart: without RDB
 * snapshots or the AOF, a restart takes every conversation with it. A Redis that hides CONFIG
 * (a managed one, say) is not asked twice: its operator decides.
 */
export async function checkHistoryPersistence(connection: RedisConnection, logger: Logger): Promise<void> {
  let save: string;
  let appendOnly: string;
  try {
    [save, appendOnly] = await connection.call(async (redis) => {
      const [, saveRule] = (await redis.call('CONFIG', 'GET', 'save')) as [string, string];
      const [, aof] = (await redis.call('CONFIG', 'GET', 'appendonly')) as [string, string];
      return [saveRule ?? '', aof ?? ''];
    });
  } catch (error) {
    logger.info({ err: error }, 'could not ask Redis how it keeps the history (CONFIG is not available): make sure it persists (RDB or AOF)');
    return;
  }
  const snapshots = save.trim() !== '';
  const aof = appendOnly === 'yes';
  if (!snapshots && !aof) {
    logger.warn(
      { snapshots, appendOnly: aof },
      'history lives in a Redis that keeps nothing across its restart (no RDB snapshots, no AOF): turn one on, or keep history in PostgreSQL (DATABASE_URL)',
    );
    return;
  }
  logger.info({ snapshots, appendOnly: aof }, "checked the Redis history's persistence");
}
