import type { EventLog } from './event-log.ts';
import type { History } from './history.ts';
import type { LeaseStore } from './lease-store.ts';
import type { Signals } from './signals.ts';

/**
 * Everything Sluice keeps, by role: history (what must last), the event logs of replies, leases and
 * limits, and signals between instances. Each role is a small port with one contract test run on
 * every implementation; the core never asks which implementation it has. What is live belongs in
 * memory or Redis; what must last, in a database.
 */
export interface Store {
  /** For logs: which backends hold the roles (`memory`, `redis`, ...). */
  readonly kind: string;
  readonly history: History;
  readonly events: EventLog;
  readonly leases: LeaseStore;
  readonly signals: Signals;
  /** True when the backing services answer (readiness). */
  healthy(): Promise<boolean>;
  /** Resolves once connected, or false after `timeoutMs` (the store then answers `unavailable` until it is). */
  ready(timeoutMs: number): Promise<boolean>;
  /** Closes every role's connections. Safe to call twice. */
  close(): Promise<void>;
}
