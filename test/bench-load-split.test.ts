import { describe, expect, it } from 'vitest';
import { splitLoad, type LoadSpec } from '../bench/load.ts';

const spec = (concurrency: number, total: number): LoadSpec => ({
  concurrency,
  total,
  rampMs: 0,
  prompt: 'p',
  expected: [],
  timeoutMs: 1000,
  tag: 't',
  offset: 10,
});

describe("the bench's load, shared out among load workers", () => {
  it('gives every worker a share of users and replies, the conversations numbered without gaps or overlaps', () => {
    for (const [c, n, parts] of [
      [50, 1000, 2],
      [50, 1000, 3],
      [1000, 1000, 4],
      [2, 4, 2],
      [3, 2, 4],
      [1, 300, 2],
    ] as const) {
      const shares = splitLoad(spec(c, n), parts);
      const users = Math.min(c, n);
      expect(
        shares.reduce((s, p) => s + p.concurrency, 0),
        `${c}/${n}/${parts}`,
      ).toBe(users);
      expect(
        shares.reduce((s, p) => s + p.total, 0),
        `${c}/${n}/${parts}`,
      ).toBe(n);
      expect(shares.length).toBe(Math.min(parts, users));
      let offset = 10;
      for (const share of shares) {
        expect(share.offset).toBe(offset);
        expect(share.total).toBeGreaterThanOrEqual(share.concurrency > 0 ? 1 : 0);
        offset += share.total;
      }
      const sizes = shares.map((p) => p.concurrency);
      expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
    }
  });
});
