import { describe, expect, it } from 'vitest';
import { TokenCountCache } from '../server/core/token-count-cache.ts';

describe('TokenCountCache', () => {
  const counter = () => {
    const calls: string[] = [];
    return { calls, count: (text: string) => (calls.push(text), text.length) };
  };

  it('counts a long text once, and short texts every time', () => {
    const cache = new TokenCountCache({ minChars: 10, maxChars: 100 });
    const { calls, count } = counter();
    const long = 'x'.repeat(20);
    expect(cache.count(long, count)).toBe(20);
    expect(cache.count(long, count)).toBe(20);
    expect(cache.count('short', count)).toBe(5);
    expect(cache.count('short', count)).toBe(5);
    expect(calls).toEqual([long, 'short', 'short']);
    expect(cache.size).toBe(20);
  });

  it('keeps at most maxChars, dropping the least recently used first', () => {
    const cache = new TokenCountCache({ minChars: 10, maxChars: 100 });
    const { calls, count } = counter();
    const [a, b, c] = ['a', 'b', 'c'].map((ch) => ch.repeat(40)) as [string, string, string];
    cache.count(a, count);
    cache.count(b, count);
    cache.count(a, count); // a is now the most recently used
    cache.count(c, count); // 120 > 100: b goes
    expect(cache.size).toBe(80);
    calls.length = 0;
    cache.count(a, count);
    cache.count(c, count);
    expect(calls).toEqual([]);
    cache.count(b, count);
    expect(calls).toEqual([b]);
    // A text longer than the whole cache is counted, never kept.
    cache.count('z'.repeat(150), count);
    expect(cache.size).toBeLessThanOrEqual(100);
  });

  it('refuses bounds that make no sense', () => {
    expect(() => new TokenCountCache({ minChars: 0, maxChars: 10 })).toThrow(RangeError);
    expect(() => new TokenCountCache({ minChars: 10, maxChars: 5 })).toThrow(RangeError);
  });
});
