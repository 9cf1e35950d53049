import { performance } from 'node:perf_hooks';
import { describe, expect, it, vi } from 'vitest';
import { MemoryLeaseStore } from '../server/core/store/leases/memory.ts';
import { MemorySignals } from '../server/core/store/signals/memory.ts';

// The memory store's marks, leases and rate windows expire; what has expired must go without
// each new entry walking every live one. A busy server keeps more than 10,000 of them live (a
// settled mark per reply of the last minutes, two leases per running reply): a walk of them all on
// every reply made the memory store O(n) a reply. The bound is 15-30 times what the work takes
// done right (90 and 170 ms on the development machine), a quarter or less of what the walk took
// there (12 and 21 s).
const N = 40_000;
const HOUR = 3_600_000;

async function timed(work: () => Promise<void>): Promise<number> {
  const started = performance.now();
  await work();
  return performance.now() - started;
}

describe('memory store: entries that expire cost O(1) each, however many are live', () => {
  it('signals: settling 40,000 replies whose marks all live', async () => {
    const signals = new MemorySignals();
    let settled = 0;
    const ms = await timed(async () => {
      for (let i = 0; i < N; i++) if ((await signals.settle(`g${i}`, HOUR)) === 'settled') settled++;
    });
    expect(settled).toBe(N);
    expect(ms).toBeLessThan(3000);
    // Still what they were.
    expect(await signals.requestCancel('g0', HOUR)).toBe(false);
    expect(await signals.requestCancel('new', HOUR)).toBe(true);
    expect(await signals.cancelled(['g0', 'new'])).toEqual(['new']);
  });

  it("signals: an orphan's ending, marked for a day, does not keep the minutes-long marks made after it", async () => {
    // The third review: one such mark at the front of the map stopped its sweep for a day, and
    // every settled reply after it stayed in memory that long.
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const signals = new MemorySignals();
      await signals.settle('orphaned', 60_000, { endingTtlMs: 24 * HOUR });
      for (let i = 0; i < 1000; i++) await signals.settle(`g${i}`, 60_000);
      vi.setSystemTime(Date.now() + 120_000);
      await signals.settle('later', 60_000);
      expect(signals.size).toBeLessThanOrEqual(2);
      expect(await signals.settle('orphaned', 60_000)).toBe('ended');
    } finally {
      vi.useRealTimers();
    }
  });

  it('leases: 40,000 held at once, and as many rate windows', async () => {
    const leases = new MemoryLeaseStore();
    let acquired = 0;
    let firstHits = 0;
    const ms = await timed(async () => {
      for (let i = 0; i < N; i++) {
        if (await leases.acquire(`lock:${i}`, `h${i}`, HOUR)) acquired++;
        if ((await leases.hitWindow(`rate:${i}`, HOUR)).count === 1) firstHits++;
      }
    });
    expect([acquired, firstHits]).toEqual([N, N]);
    expect(ms).toBeLessThan(3000);
    expect(await leases.holder('lock:0')).toBe('h0');
    expect(await leases.acquire('lock:0', 'other', HOUR)).toBe(false);
    expect((await leases.hitWindow('rate:0', HOUR)).count).toBe(2);
  });
});
