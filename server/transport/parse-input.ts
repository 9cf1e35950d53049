import type { ZodType } from 'zod';
import { SluiceError } from '../core/errors.ts';

/**
 * Validates a client's input against a shared schema. Clients never see zod's own output: the first
 * problems become one `invalid_request` whose message says `<field>: <problem>`, the same on every
 * route and transport.
 */
export function parseWith<T>(schema: ZodType<T>, value: unknown, whole = 'input'): T {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.slice(0, 3).map((issue) => {
    const where = issue.path.length > 0 ? issue.path.join('.') : whole;
    return `${where}: ${issue.message}`;
  });
  throw new SluiceError('invalid_request', problems.join('; '));
}

/** A schema as a tRPC input parser: tRPC keeps the SluiceError as the cause of its BAD_REQUEST. */
export function inputParser<T>(schema: ZodType<T>): (value: unknown) => T {
  return (value) => parseWith(schema, value);
}
