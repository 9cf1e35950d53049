import type { CombinedDataTransformer } from '@trpc/server';
import superjson, { type SuperJSONResult } from 'superjson';
import { inputNotSuperjson } from './errors.ts';

// JSON-safe values that superjson would pass through untouched: no Dates, Maps, undefined, NaN,
// Infinity or -0 (those need superjson's type annotations).
function isPlainJson(value: unknown, depth = 0): boolean {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return true;
  if (typeof value === 'number') return Number.isFinite(value) && !Object.is(value, -0);
  if (typeof value !== 'object' || depth > 8) return false;
  if (Array.isArray(value)) return value.every((item) => isPlainJson(item, depth + 1));
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== Object.prototype && proto !== null) return false;
  for (const key in value) {
    if (key === '__proto__' || !isPlainJson((value as Record<string, unknown>)[key], depth + 1)) return false;
  }
  return true;
}

/**
 * superjson, with a fast path for plain JSON: superjson's output for such a value is exactly
 * `{ json: value }`, so the bytes on the wire are the same and stock superjson clients read them,
 * without a walk of every stream event through superjson's machinery.
 */
export const transformer: CombinedDataTransformer = {
  input: {
    serialize: (value: unknown) => superjson.serialize(value),
    // A client's annotations can make superjson throw anything (a stack overflow, a BigInt it
    // cannot make): one error naming the input, never the exception's text.
    deserialize: (value: unknown): unknown => {
      try {
        return superjson.deserialize(value as SuperJSONResult);
      } catch {
        throw inputNotSuperjson();
      }
    },
  },
  output: {
    serialize: (value: unknown) => (isPlainJson(value) ? { json: value } : superjson.serialize(value)),
    deserialize: (value: unknown): unknown => superjson.deserialize(value as SuperJSONResult),
  },
};
