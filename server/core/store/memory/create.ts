import { MemoryEventLog } from '../event-log/memory.ts';
import { MemoryHistory } from '../history/memory.ts';
import type { History } from '../history.ts';
import { MemoryLeaseStore } from '../leases/memory.ts';
import { MemorySignals } from '../signals/memory.ts';
import type { Store } from '../store.ts';

export interface MemoryStoreOptions {
  /** History kept elsewhere (a database); in this process's memory by default. */
  readonly history?: History;
  /** See MemoryEventLogOptions.shared. */
  readonly sharedEventLog?: boolean;
}

/** Every live role in this process: nothing is shared with other processes, nothing survives a restart. */
export function createMemoryStore(options: MemoryStoreOptions = {}): Store {
  const history = options.history ?? new MemoryHistory();
  const events = new MemoryEventLog({ shared: options.sharedEventLog ?? false });
  const signals = new MemorySignals();
  let closed = false;
  let closing: Promise<void> | undefined;
  return {
    kind: options.history ? 'memory+history' : 'memory',
    history,
    events,
    leases: new MemoryLeaseStore(),
    signals,
    healthy: async () => !closed,
    ready: async () => !closed,
    close: () => {
      closing ??= (async () => {
        closed = true;
        signals.close();
        events.close();
        await history.close();
      })();
      return closing;
    },
  };
}
