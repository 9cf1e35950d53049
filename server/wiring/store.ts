import type { Logger } from 'pino';
import type { Config } from '../config.ts';
import { createMemoryStore } from '../core/store/memory/create.ts';
import { createRedisStore } from '../core/store/redis/create.ts';
import type { Store } from '../core/store/store.ts';

/** The store the configuration names, built from the settings that concern it. */
export function storeFrom(config: Config, logger: Logger): Store {
  return config.REDIS_URL ? createRedisStore({ url: config.REDIS_URL, logger, prefix: config.REDIS_PREFIX }) : createMemoryStore();
}
