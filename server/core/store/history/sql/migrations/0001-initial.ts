import type { Migration } from './index.ts';

/**
 * Sessions carry the next position to give (so that positions are allocated under the session's
 * row lock, never by max()+1, which two PostgreSQL writers could both read) and when they were
 * last touched (for retention, hence the index). A message's `reply_id` names the reply it is or
 * drafts; `status` is `draft` until the reply's final message replaces it.
 */
export const initial: Migration = {
  version: 1,
  name: 'initial',
  statements: [
    `CREATE TABLE history_sessions (
      session_key TEXT PRIMARY KEY,
      touched_at BIGINT NOT NULL,
      next_seq INTEGER NOT NULL
    )`,
    `CREATE INDEX history_sessions_touched ON history_sessions (touched_at)`,
    `CREATE TABLE history_messages (
      session_key TEXT NOT NULL REFERENCES history_sessions (session_key) ON DELETE CASCADE,
      seq INTEGER NOT NULL,
      role TEXT NOT NULL,
      status TEXT NOT NULL,
      content TEXT NOT NULL,
      created_at TEXT NOT NULL,
      prompt_tokens INTEGER,
      completion_tokens INTEGER,
      reply_id TEXT,
      PRIMARY KEY (session_key, seq)
    )`,
    `CREATE UNIQUE INDEX history_messages_reply ON history_messages (session_key, reply_id) WHERE reply_id IS NOT NULL`,
  ],
};
