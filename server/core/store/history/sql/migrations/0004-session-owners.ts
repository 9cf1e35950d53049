import type { Migration } from './index.ts';

/** The characters a session id may hold (SESSION_ID_PATTERN's, as the test of this migration checks), none of them `/`. */
export const SESSION_ID_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-';

/**
 * Whose each session is (ownerOfSessionKey), so that an owner's sessions are counted without
 * reading every key (the limit on sessions per key: a turn in a new session counts them). The
 * existing rows get theirs from their keys (`<owner>/<session id>`): the id's characters are
 * trimmed off the end, then the `/`, in functions SQLite and PostgreSQL share (neither has the
 * other's `instr`/`strpos`). Rows are written with it from this version on.
 */
export const sessionOwners: Migration = {
  version: 4,
  name: 'session owners',
  statements: [
    `ALTER TABLE history_sessions ADD COLUMN owner TEXT NOT NULL DEFAULT ''`,
    `UPDATE history_sessions SET owner = rtrim(rtrim(session_key, '${SESSION_ID_CHARS}'), '/')`,
    `CREATE INDEX history_sessions_owner ON history_sessions (owner)`,
  ],
};
