import type { Logger } from 'pino';
import type { Config } from '../../config.ts';
import { MemoryStore } from './memory-store.ts';
import { RedisStore } from './redis-store.ts';
import type { Store } from './store.ts';

export function createStore(config: Config, logger: Logger): Store {
  return config.REDIS_URL ? new RedisStore({ url: config.REDIS_URL, logger, prefix: config.REDIS_PREFIX }) : new MemoryStore();
}
