/**
 * Leases and limits that hold across instances: the LeaseStore port. A lease is a key held by one
 * holder until it is released or its time runs out without a refresh (session locks, liveness
 * marks); a slot is one of a limited number of places under a key (streams or WebSocket
 * connections per key); a window counts hits (requests per minute). Methods reject with
 * SluiceError('unavailable') when the backing service cannot be reached.
 */
export interface LeaseStore {
  /** Takes `key` for `holder` for `ttlMs`; false when someone else holds it. */
  acquire(key: string, holder: string, ttlMs: number): Promise<boolean>;
  /** Extends a held lease; false when `holder` no longer holds it (expired, or taken by another). */
  refresh(key: string, holder: string, ttlMs: number): Promise<boolean>;
  /** Releases the lease if `holder` still holds it. */
  release(key: string, holder: string): Promise<void>;
  /** Who holds `key` now, if anyone. */
  holder(key: string): Promise<string | undefined>;

  /** Takes one of `limit` slots of `key` for `member` (a slot expires after `ttlMs` unless refreshed). */
  acquireSlot(key: string, member: string, limit: number, ttlMs: number): Promise<boolean>;
  /** Extends a slot; false when `member` no longer has it. */
  refreshSlot(key: string, member: string, ttlMs: number): Promise<boolean>;
  releaseSlot(key: string, member: string): Promise<void>;

  /** Counts a hit in the fixed window `key` of `windowMs`; returns the count so far and when the window ends. */
  hitWindow(key: string, windowMs: number): Promise<{ count: number; resetInMs: number }>;
}
