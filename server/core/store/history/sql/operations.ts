import type { ChatMessage } from '../../../../../shared/messages.ts';
import type { Logger } from 'pino';
import { ownerOfSessionKey, type HistoryMessage } from '../../history.ts';
import type { Dialect, Migration } from './migrations/index.ts';
import { isoTime } from '../../../iso-time.ts';

/**
 * The History's SQL and the logic around it, written once for SQLite and PostgreSQL. An operation
 * is a generator that yields its statements one at a time and gets each one's rows back, so the
 * same code runs synchronously inside a SQLite transaction and awaited inside a PostgreSQL one.
 * Placeholders are PostgreSQL's `$1`; the SQLite store rewrites them to its `?1`.
 */
export type SqlValue = string | number | null;
export type Row = Record<string, unknown>;
export interface Step {
  readonly sql: string;
  readonly params: readonly SqlValue[];
  /** At most one row comes back (a key lookup, a RETURNING of one row): a driver may fetch it alone. */
  readonly one?: boolean;
}
export type Op<T> = Generator<Step, T, Row[]>;

const step = (sql: string, ...params: SqlValue[]): Step => ({ sql, params });
const stepOne = (sql: string, ...params: SqlValue[]): Step => ({ sql, params, one: true });

// A session a release before schema 4 made (beside this one in a rolling deploy, or after a
// downgrade) has no owner: the next write to it gives it its owner, so that it counts (a no-op
// otherwise, and the same value: no index entry changes).
const ADOPT = `owner = CASE history_sessions.owner WHEN '' THEN excluded.owner ELSE history_sessions.owner END`;
// A position is allocated under the session row's lock: the counter moves even where two
// PostgreSQL writers append to one session at once.
const NEXT_SEQ = `INSERT INTO history_sessions (session_key, touched_at, next_seq, owner) VALUES ($1, $2, 2, $3)
  ON CONFLICT (session_key) DO UPDATE SET touched_at = excluded.touched_at, next_seq = history_sessions.next_seq + 1, ${ADOPT}
  RETURNING next_seq - 1 AS seq`;
// A turn's start takes two positions at once: its user's message and its reply's draft.
const NEXT_SEQ_PAIR = `INSERT INTO history_sessions (session_key, touched_at, next_seq, owner) VALUES ($1, $2, 3, $3)
  ON CONFLICT (session_key) DO UPDATE SET touched_at = excluded.touched_at, next_seq = history_sessions.next_seq + 2, ${ADOPT}
  RETURNING next_seq - 2 AS seq`;
// The same for a turn whose owner has a limit on sessions: a session that exists takes its
// positions; a new one is made only while its owner holds fewer than $4. One statement, so that the
// count and the insert see the same rows: turns run one after another on a transaction's connection.
// (Typed: PostgreSQL takes a SELECT's untyped parameters for text.)
const EXISTING_SEQ_PAIR = `UPDATE history_sessions SET touched_at = $2, next_seq = next_seq + 2,
  owner = CASE owner WHEN '' THEN CAST($3 AS TEXT) ELSE owner END
  WHERE session_key = $1 RETURNING next_seq - 2 AS seq`;
const NEW_SEQ_PAIR = `INSERT INTO history_sessions (session_key, touched_at, next_seq, owner)
  SELECT CAST($1 AS TEXT), CAST($2 AS BIGINT), 3, CAST($3 AS TEXT) WHERE (SELECT count(*) FROM history_sessions WHERE owner = $3) < $4
    OR EXISTS (SELECT 1 FROM history_sessions WHERE session_key = $1)
  ON CONFLICT (session_key) DO UPDATE SET touched_at = excluded.touched_at, next_seq = history_sessions.next_seq + 2, ${ADOPT}
  RETURNING next_seq - 2 AS seq`;
const INSERT = `INSERT INTO history_messages
  (session_key, seq, role, status, content, created_at, prompt_tokens, completion_tokens, usage_estimated, reply_id)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`;
const INSERT_PAIR = `INSERT INTO history_messages
  (session_key, seq, role, status, content, created_at, prompt_tokens, completion_tokens, usage_estimated, reply_id)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL), ($1, $10, 'assistant', 'draft', '', $11, NULL, NULL, NULL, $12)`;
// A draft becomes the final message; so does an `interrupted` end another process gave the reply
// while it went on to complete, while nothing came after it (see History's contract).
const FINISH_DRAFT = `UPDATE history_messages
  SET role = $3, status = $4, content = $5, created_at = $6, prompt_tokens = $7, completion_tokens = $8, usage_estimated = $9
  WHERE session_key = $1 AND reply_id = $2 AND (status = 'draft' OR (status = 'interrupted' AND $4 = 'complete'
    AND NOT EXISTS (SELECT 1 FROM history_messages later WHERE later.session_key = $1 AND later.seq > history_messages.seq)))
  RETURNING seq`;
const UPDATE_DRAFT = `UPDATE history_messages SET content = $3
  WHERE session_key = $1 AND reply_id = $2 AND status = 'draft' RETURNING seq`;
const REPLY_ROW = `SELECT seq, status FROM history_messages WHERE session_key = $1 AND reply_id = $2`;
// Positions have no gaps (a draft keeps the one it took), so the newest `keepLast` are the last
// `keepLast` positions given.
const TRIM = `DELETE FROM history_messages WHERE session_key = $1
  AND seq < (SELECT next_seq FROM history_sessions WHERE session_key = $1) - $2`;
const READ = `SELECT seq, role, status, content, created_at, prompt_tokens, completion_tokens, usage_estimated, reply_id
  FROM history_messages WHERE session_key = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3`;
const DELETE_SESSION = `DELETE FROM history_sessions WHERE session_key = $1 RETURNING session_key`;
const EXPIRE = `DELETE FROM history_sessions WHERE session_key IN
  (SELECT session_key FROM history_sessions WHERE touched_at < $1 ORDER BY touched_at LIMIT $2)
  RETURNING session_key`;

const DRAFT = 'draft';

function fieldsOf(message: ChatMessage): [string, string, string, string, number | null, number | null, number | null] {
  return [
    message.role,
    message.status,
    message.content,
    message.createdAt,
    message.usage?.promptTokens ?? null,
    message.usage?.completionTokens ?? null,
    message.usage?.estimated ? 1 : null,
  ];
}

export function* append(sessionKey: string, message: ChatMessage, keepLast: number, replyId: string | undefined, now: number): Op<number> {
  const fields = fieldsOf(message);
  if (replyId !== undefined) {
    // The common case first, in one statement: the reply's draft becomes its final message.
    const [finished] = yield stepOne(FINISH_DRAFT, sessionKey, replyId, ...fields);
    if (finished) {
      // The session is not touched again: its turn touched it when it began, moments ago in
      // retention's terms, and a commit that leaves the session's row alone writes a third of the pages.
      // The draft's position stands for the newest (a later one waits for the next append's trim).
      const seq = Number(finished.seq);
      yield* trim(sessionKey, keepLast, seq);
      return seq;
    }
    // A reply has one final message: appending it again (a retry) changes nothing.
    const [row] = yield stepOne(REPLY_ROW, sessionKey, replyId);
    if (row) return Number(row.seq);
  }
  const seq = yield* nextSeq(sessionKey, now);
  yield step(INSERT, sessionKey, seq, ...fields, replyId ?? null);
  yield* trim(sessionKey, keepLast, seq);
  return seq;
}

export interface BeginLimit {
  /** Sessions the owner may hold (0: no limit). */
  readonly maxSessions: number;
  /**
   * Run before a new session's count, where other writers may count at once (PostgreSQL's
   * instances): a lock until the transaction ends, so that the next count sees this one's session.
   */
  readonly ownerLock?: (owner: string) => Step;
}

/**
 * A turn's start: the user's message and its reply's empty draft, in two statements (a third and
 * a lock for a new session under a limit). Resolves with the message's position, or undefined
 * when the session is new and its owner holds `maxSessions` (then nothing was written).
 */
export function* begin(sessionKey: string, message: ChatMessage, keepLast: number, replyId: string, now: number, limit: BeginLimit): Op<number | undefined> {
  const owner = ownerOfSessionKey(sessionKey);
  let row: Row | undefined;
  if (limit.maxSessions === 0) [row] = yield stepOne(NEXT_SEQ_PAIR, sessionKey, now, owner);
  else {
    [row] = yield stepOne(EXISTING_SEQ_PAIR, sessionKey, now, owner);
    if (!row) {
      if (limit.ownerLock) yield limit.ownerLock(owner);
      [row] = yield stepOne(NEW_SEQ_PAIR, sessionKey, now, owner, limit.maxSessions);
      if (!row) return undefined;
    }
  }
  const seq = Number(row!.seq);
  yield step(INSERT_PAIR, sessionKey, seq, ...fieldsOf(message), seq + 1, isoTime(now), replyId);
  // As append then checkpoint: the message is trimmed to keepLast, its draft comes on top (the final message trims it).
  yield* trim(sessionKey, keepLast + 1, seq + 1);
  return seq;
}

function* trim(sessionKey: string, keepLast: number, newest: number): Op<void> {
  // Positions start at 1 without gaps: up to keepLast of them, there is nothing to trim.
  if (newest > keepLast) yield step(TRIM, sessionKey, keepLast);
}

export function* checkpoint(sessionKey: string, replyId: string, text: string, now: number): Op<void> {
  // The session was touched when the draft began (a running reply's session is not idle): one statement.
  const [updated] = yield stepOne(UPDATE_DRAFT, sessionKey, replyId, text);
  if (updated) return;
  const [finished] = yield stepOne(REPLY_ROW, sessionKey, replyId);
  if (finished) return; // the reply has its final message (an UPDATE_DRAFT miss: not a draft)
  const seq = yield* nextSeq(sessionKey, now);
  yield step(INSERT, sessionKey, seq, 'assistant', DRAFT, text, isoTime(now), null, null, null, replyId);
}

function* nextSeq(sessionKey: string, now: number): Op<number> {
  // A session made here (a reply's final message after its session was deleted, say) is its owner's
  // all the same, and counted; never refused: history must not lose what a reply said.
  const [row] = yield stepOne(NEXT_SEQ, sessionKey, now, ownerOfSessionKey(sessionKey));
  return Number(row!.seq);
}

/** How much a probe writes: about a turn's worth. */
const PROBE_CHARS = 64 * 1024;

/** The probe's session: no owner's session key (those are `<owner>/<session id>`), and gone before its transaction ends. */
const PROBE_SESSION = 'sluice:probe';

/**
 * A write that leaves nothing behind, to find out whether writes go through (the store's health
 * while they fail). It writes where a turn writes, the sessions and messages tables (a lock held
 * on one of them elsewhere fails turns, not a write to another table), and takes space as a turn
 * does: SQLite commits an update that changes no value without writing a page, so on a full disk
 * it succeeded while every turn failed.
 */
export function* probe(): Op<void> {
  yield step('INSERT INTO history_sessions (session_key, touched_at, next_seq) VALUES ($1, 0, 2)', PROBE_SESSION);
  yield step(
    "INSERT INTO history_messages (session_key, seq, role, status, content, created_at) VALUES ($1, 1, 'user', 'complete', $2, '')",
    PROBE_SESSION,
    'x'.repeat(PROBE_CHARS),
  );
  yield step('DELETE FROM history_messages WHERE session_key = $1', PROBE_SESSION);
  yield step('DELETE FROM history_sessions WHERE session_key = $1', PROBE_SESSION);
}

export function* deleteSession(sessionKey: string): Op<boolean> {
  return (yield step(DELETE_SESSION, sessionKey)).length > 0;
}

/** Deletes up to `chunk` idle sessions (a bounded transaction); resolves with how many. */
export function* expireIdle(cutoff: number, chunk: number): Op<number> {
  return (yield step(EXPIRE, cutoff, chunk)).length;
}

export const readStep = (sessionKey: string, limit: number, before: number): Step => step(READ, sessionKey, before, limit);

const DRAFTS = `SELECT session_key, reply_id FROM history_messages WHERE status = 'draft' ORDER BY session_key, seq LIMIT $1`;
export const draftsStep = (limit: number): Step => step(DRAFTS, limit);

const ROLES = new Set(['user', 'assistant']);
const STATUSES = new Set(['complete', 'interrupted', 'failed', DRAFT]);

/**
 * READ's rows (newest first) as messages, oldest first. A row that is not a message (written by
 * hand, say) is skipped and reported to `onCorrupt`, never fatal to the session.
 */
export function toMessages(rows: readonly Row[], onCorrupt?: (row: Row) => void): HistoryMessage[] {
  const out: HistoryMessage[] = [];
  for (let i = rows.length - 1; i >= 0; i--) {
    const row = rows[i]!;
    if (
      !ROLES.has(row.role as string) ||
      !STATUSES.has(row.status as string) ||
      typeof row.content !== 'string' ||
      Number.isNaN(Date.parse(String(row.created_at)))
    ) {
      onCorrupt?.(row);
      continue;
    }
    const draft = row.status === DRAFT;
    const message: HistoryMessage = {
      role: row.role as HistoryMessage['role'],
      content: row.content,
      status: draft ? 'interrupted' : (row.status as HistoryMessage['status']),
      createdAt: row.created_at as string,
      seq: Number(row.seq),
    };
    if (row.prompt_tokens !== null && row.completion_tokens !== null) {
      message.usage = { promptTokens: Number(row.prompt_tokens), completionTokens: Number(row.completion_tokens) };
      if (Number(row.usage_estimated) === 1) message.usage.estimated = true;
    }
    out.push(draft ? { ...message, draftOf: row.reply_id as string } : message);
  }
  return out;
}

export interface MigrationResult {
  /** The versions this call applied. */
  readonly applied: number[];
  /** The newest version in the database (above ours when a newer release migrated it). */
  readonly version: number;
}

/**
 * Applies the migrations the database lacks, each recorded in `history_migrations`. Run it in one
 * transaction that no other migrator can enter (`lock`: PostgreSQL's advisory lock; SQLite's
 * BEGIN IMMEDIATE needs none), so instances starting together apply each version once.
 */
export function* migrate(migrations: readonly Migration[], dialect: Dialect, now: number, lock: readonly Step[] = []): Op<MigrationResult> {
  for (const s of lock) yield s;
  yield step(`CREATE TABLE IF NOT EXISTS history_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`);
  const done = new Set((yield step('SELECT version FROM history_migrations')).map((row) => Number(row.version)));
  const applied: number[] = [];
  for (const migration of migrations) {
    if (done.has(migration.version)) continue;
    if (!migration.only || migration.only === dialect) for (const statement of migration.statements) yield step(statement);
    yield step('INSERT INTO history_migrations (version, name, applied_at) VALUES ($1, $2, $3)', migration.version, migration.name, now);
    applied.push(migration.version);
    done.add(migration.version);
  }
  return { applied, version: Math.max(0, ...done) };
}

/** Logs what a migration run did, and a database migrated by a newer release (a rolling deploy's old instance). */
export function logMigration(result: MigrationResult, migrations: readonly Migration[], logger: Logger, database: string): void {
  if (result.applied.length > 0) logger.info({ database, applied: result.applied }, 'history: schema migrated');
  const known = migrations.at(-1)?.version ?? 0;
  if (result.version > known) logger.warn({ database, version: result.version, known }, 'history: the schema is newer than this release knows');
}
