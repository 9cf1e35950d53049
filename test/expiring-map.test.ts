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
});
