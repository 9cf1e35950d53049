import { randomBytes } from 'node:crypto';

/** 16 url-safe characters: unique enough for generation ids and free of ':' (the event id separator). */
export function newGenerationId(): string {
  return randomBytes(12).toString('base64url');
}
