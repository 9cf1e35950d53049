import { z } from 'zod';
import { SESSION_ID_PATTERN } from './session-id.ts';

export { DEFAULT_SESSION_ID, SESSION_ID_PATTERN } from './session-id.ts';

export const SessionId = z.string().regex(SESSION_ID_PATTERN, 'must be 1-128 characters of letters, digits, ".", "_", ":" or "-", other than "." and ".."');
export type SessionId = z.infer<typeof SessionId>;
