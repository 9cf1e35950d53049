import { MemoryEventLog } from '../event-log/memory.ts';
import { MemoryHistory } from '../history/memory.ts';
import type { History } from '../history.ts';
import { MemoryLeaseStore } from '../leases/memory.ts';
import { MemorySignals } from '../signals/memory.ts';
import type { Store } from '../store.ts';

export interface MemoryStoreOptions {
  /** Where history lives (a database); in this process's memory by default. */
  readonly history?: History;
  /** For logs: the history's backend. */
  readonly historyKind?: string;
  /** See MemoryEventLogOptions.shared. */
  readonly sharedEventLog?: boolean;
}

/** Every live role in this process: nothing is shared with other processes. */
export function createMemoryStore(options: MemoryStoreOptions = {}): Store {
  const history = options.history ?? new MemoryHistory();
  const events = new MemoryEventLog({ shared: options.sharedEventLog ?? false });
  const signals = new MemorySignals();
  let closed = false;
  let closing: Promise<void> | undefined;
  return {
    kind: options.historyKind && options.historyKind !== 'memory' ? `memory, history in ${options.historyKind}` : 'memory',
    history,
    events,
    leases: new MemoryLeaseStore(),
    signals,
    healthy: async () => !closed && (await history.healthy()),
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
