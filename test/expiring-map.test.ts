import { describe, expect, it } from 'vitest';
import { ExpiringMap } from '../server/core/store/memory/expiring-map.ts';

describe('ExpiringMap', () => {
  it('returns live values, never expired ones, and a set moves its key to the end', () => {
    const map = new ExpiringMap<string>();
    map.set('a', 'A', 100, 0);
    map.set('b', 'B', 200, 0);
    expect(map.get('a', 99)).toBe('A');
    expect(map.get('a', 100)).toBeUndefined();
    expect(map.size).toBe(1); // met expired, dropped
    map.set('b', 'B2', 500, 150);
    map.set('c', 'C', 300, 150);
    // 'b' moved behind 'c': at 350 the sweep drops 'c' only after 'b' expires, but 'c' is never returned.
    expect(map.get('c', 350)).toBeUndefined();
    expect(map.get('b', 350)).toBe('B2');
  });

  it('sweeps expired entries from the front as new ones come, up to the first live one', () => {
    const map = new ExpiringMap<number>();
    for (let i = 0; i < 10; i++) map.set(`k${i}`, i, 100 + i, 0);
    map.set('late', 0, 1000, 105); // k0..k5 have expired
    expect(map.size).toBe(5); // k6..k9 and late
    map.delete('late');
    map.clear();
    expect(map.size).toBe(0);
  });

  it('with a bound, a set beyond it lets the oldest entry go; expired ones never hold a place', () => {
    // The review of the ninth session: a caller that checked `size` before setting stopped setting
    // for good once the map was full of entries that had all expired (only a set sweeps them).
    const map = new ExpiringMap<number>({ max: 3 });
    for (let i = 0; i < 3; i++) map.set(`k${i}`, i, 100, 0);
    map.set('k3', 3, 100, 50);
    expect(map.size).toBe(3);
    expect(map.get('k0', 50)).toBeUndefined();
    expect(map.get('k3', 50)).toBe(3);
    // Long after they all expired, a new entry takes a place without evicting a live one.
    map.set('new', 9, 1000, 500);
    expect(map.get('new', 500)).toBe(9);
    expect(map.size).toBe(1);
  });
});
