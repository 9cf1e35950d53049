import { randomUUID } from 'node:crypto';

/**
 * 32 hex characters, free of ':' (the event id separator). randomUUID draws from a cached entropy
 * pool, so this costs far less per reply than a fresh randomBytes call.
 */
export function newGenerationId(): string {
  const uuid = randomUUID();
  return uuid.slice(0, 8) + uuid.slice(9, 13) + uuid.slice(14, 18) + uuid.slice(19, 23) + uuid.slice(24);
}
