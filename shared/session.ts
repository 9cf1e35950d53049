import { z } from 'zod';

/** Session ids appear in URLs and store keys, so they are restricted to a safe alphabet. */
export const SESSION_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
export const DEFAULT_SESSION_ID = 'default';

export const SessionId = z
  .string()
  .regex(SESSION_ID_PATTERN, 'must be 1-128 characters of letters, digits, ".", "_", ":" or "-"');
export type SessionId = z.infer<typeof SessionId>;
