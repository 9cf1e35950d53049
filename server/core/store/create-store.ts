import type { Config } from '../../config.ts';
import { MemoryStore } from './memory-store.ts';
import type { Store } from './store.ts';

export function createStore(config: Config): Store {
  if (config.REDIS_URL) throw new Error('REDIS_URL is not supported yet');
  return new MemoryStore();
}
