import type { Migration } from './index.ts';

/**
 * The drafts nothing finished, found without reading the finished messages: the SQLite store looks
 * for them before it takes requests (those a crash left), and a full scan of the table made
 * start-up time grow with the history (0.4 s a million messages, warm; the whole file from a cold
 * disk). The index holds live drafts only, a page or two, so a turn's writes barely notice it.
 * SQLite only: PostgreSQL never looks for drafts (several instances share it, so a draft may belong
 * to a running reply), and a predicate on `status` would stop its final-message UPDATEs from being
 * HOT updates.
 */
export const draftsIndex: Migration = {
  version: 3,
  name: 'drafts index',
  only: 'sqlite',
  statements: [`CREATE INDEX history_messages_drafts ON history_messages (session_key, seq) WHERE status = 'draft'`],
};
