import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from '@photostructure/sqlite';
import { pino } from 'pino';
import postgres from 'postgres';
import { afterEach, describe, expect, it } from 'vitest';
import { ownerOfSessionKey, type History } from '../server/core/store/history.ts';
import { PostgresHistory } from '../server/core/store/history/postgres.ts';
import { SESSION_ID_CHARS } from '../server/core/store/history/sql/migrations/0004-session-owners.ts';
import { MIGRATIONS, type Dialect } from '../server/core/store/history/sql/migrations/index.ts';
import { SqliteHistory } from '../server/core/store/history/sqlite.ts';
import { SESSION_ID_PATTERN } from '../shared/session-id.ts';
import { startPostgres } from './helpers/postgres.ts';

// Sessions kept before release 4 of the schema have no owner column: the migration reads each
// one's owner from its key, so that the sessions a key already holds count toward its limit.

const logger = pino({ level: 'silent' });
const opened: History[] = [];
afterEach(async () => {
  for (const history of opened.splice(0)) await history.close();
});

/** Keys as the chat service makes them (every character a session id may hold), and one without an owner. */
const KEYS = ['k_0123abcd/s1', 'k_0123abcd/All.the_chars:of-an-id09', 'k_0123abcd/default', 'u_99ff/default', 'anonymous/x', 'no-owner'];

/** The schema as release 3 left it, with one session per key in KEYS. */
function olderSchema(dialect: Dialect): string[] {
  const statements = MIGRATIONS.filter((m) => m.version < 4 && (!m.only || m.only === dialect)).flatMap((m) => m.statements);
  statements.push('CREATE TABLE history_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)');
  for (const m of MIGRATIONS.filter((m) => m.version < 4)) statements.push(`INSERT INTO history_migrations VALUES (${m.version}, '${m.name}', 0)`);
  for (const key of KEYS) statements.push(`INSERT INTO history_sessions (session_key, touched_at, next_seq) VALUES ('${key}', 0, 1)`);
  return statements;
}

const user = { role: 'user', content: 'q', status: 'complete', createdAt: new Date().toISOString() } as const;

async function expectOwnersCounted(history: History, owners: () => Promise<Array<{ session_key: string; owner: string }>>): Promise<void> {
  expect(await owners()).toEqual(
    KEYS.map((key) => ({ session_key: key, owner: ownerOfSessionKey(key) })).sort((a, b) => (a.session_key < b.session_key ? -1 : 1)),
  );
  // k_0123abcd holds three sessions already: a fourth is refused, a turn in one it holds is not.
  await expect(history.begin('k_0123abcd/new', user, { keepLast: 10, replyId: 'r1', maxSessions: 3 })).rejects.toMatchObject({ code: 'rate_limited' });
  expect(await history.begin('k_0123abcd/s1', user, { keepLast: 10, replyId: 'r2', maxSessions: 3 })).toBe(1);
  expect(await history.begin('u_99ff/new', user, { keepLast: 10, replyId: 'r3', maxSessions: 3 })).toBe(1);
}

/**
 * A release before 4, running beside this one in a rolling deploy (or after a downgrade), makes
 * sessions without an owner: the next turn in one through this release gives it its owner.
 */
async function expectOldReleaseSessionsAdopted(
  history: History,
  exec: (sql: string) => Promise<unknown>,
  ownerOf: (key: string) => Promise<string>,
): Promise<void> {
  // With and without a limit (they write a session's row in different statements).
  for (const maxSessions of [0, 10]) {
    const key = `u_77aa/made-by-an-older-release-${maxSessions}`;
    await exec(`INSERT INTO history_sessions (session_key, touched_at, next_seq) VALUES ('${key}', 0, 1)`);
    expect(await ownerOf(key)).toBe('');
    await history.begin(key, user, { keepLast: 10, replyId: `r4-${maxSessions}`, maxSessions });
    expect(await ownerOf(key)).toBe('u_77aa');
  }
}

describe('history migration 4: the owners of the sessions kept before it', () => {
  it('trims exactly the characters a session id may hold', () => {
    const chars = [...SESSION_ID_CHARS];
    expect(chars.every((c) => SESSION_ID_PATTERN.test(`a${c}`))).toBe(true);
    for (let code = 0; code < 0x80; code++) {
      const c = String.fromCharCode(code);
      if (SESSION_ID_PATTERN.test(`a${c}`)) expect(chars).toContain(c);
    }
    expect(chars).not.toContain('/');
  });

  it('SQLite', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'sluice-owners-')), 'history.db');
    const db = new DatabaseSync(path);
    for (const statement of olderSchema('sqlite')) db.exec(statement);
    db.close();
    const history = await SqliteHistory.open({ path, logger });
    opened.push(history);
    await expectOwnersCounted(history, async () => {
      const reader = new DatabaseSync(path, { readOnly: true });
      try {
        return reader.prepare('SELECT session_key, owner FROM history_sessions WHERE next_seq = 1 ORDER BY session_key').all() as Array<{
          session_key: string;
          owner: string;
        }>;
      } finally {
        reader.close();
      }
    });
    const writer = new DatabaseSync(path);
    try {
      await expectOldReleaseSessionsAdopted(
        history,
        async (sql) => writer.exec(sql),
        async (key) => (writer.prepare('SELECT owner FROM history_sessions WHERE session_key = ?').get(key) as { owner: string }).owner,
      );
    } finally {
      writer.close();
    }
  });

  it('PostgreSQL', async () => {
    const server = await startPostgres();
    if (!server) return;
    const url = await server.createDatabase();
    const client = postgres(url, { max: 1, onnotice: () => undefined });
    try {
      for (const statement of olderSchema('postgres')) await client.unsafe(statement);
      const history = await PostgresHistory.open({ url, logger });
      opened.push(history);
      await expectOwnersCounted(history, async () => [
        ...(await client<
          Array<{ session_key: string; owner: string }>
        >`SELECT session_key, owner FROM history_sessions WHERE next_seq = 1 ORDER BY session_key COLLATE "C"`),
      ]);
      await expectOldReleaseSessionsAdopted(
        history,
        (sql) => client.unsafe(sql),
        async (key) => (await client<Array<{ owner: string }>>`SELECT owner FROM history_sessions WHERE session_key = ${key}`)[0]!.owner,
      );
    } finally {
      await client.end();
    }
  });
});
