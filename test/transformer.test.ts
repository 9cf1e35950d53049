import superjson from 'superjson';
import { describe, expect, it } from 'vitest';
import { transformer } from '../server/transport/trpc/transformer.ts';

describe('tRPC transformer', () => {
  it('writes exactly what superjson writes, plain values by the fast path and the rest by superjson', () => {
    const values: unknown[] = [
      { type: 'delta', delta: 'Based ', index: 1 },
      { type: 'done', totalChunks: 39, usage: { promptTokens: 3, completionTokens: 39 } },
      { sessionId: 's', messages: [{ role: 'user', content: 'x', status: 'complete', createdAt: '2026-01-01T00:00:00.000Z' }] },
      null,
      'text',
      [1, 'a', true],
      { when: new Date(0) },
      { missing: undefined },
      { n: Number.NaN, inf: Number.POSITIVE_INFINITY, neg: -0 },
      { big: 10n },
      { set: new Set([1]) },
    ];
    for (const value of values) {
      const ours = transformer.output.serialize(value);
      expect(JSON.stringify(ours)).toBe(JSON.stringify(superjson.serialize(value)));
      expect(superjson.deserialize(ours as never)).toEqual(value);
    }
  });
});
