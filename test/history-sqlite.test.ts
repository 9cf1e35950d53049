import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pino } from 'pino';
import { DatabaseSync } from '@photostructure/sqlite';
import { afterEach, expect, it, vi } from 'vitest';
import { endCrashedDrafts } from '../server/core/crashed-drafts.ts';
import { draftsStep } from '../server/core/store/history/sql/operations.ts';
import { SqliteHistory } from '../server/core/store/history/sqlite.ts';
import { REPO_ROOT, spawnNode } from './helpers/children.ts';
import { captureLogs } from './helpers/logs.ts';

let dir: string | undefined;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});
const logger = pino({ level: 'silent' });

/** A new directory for this test (removed after it), and the path of a database in it. */
function freshDatabase(prefix: string): string {
  dir = mkdtempSync(join(tmpdir(), `sluice-${prefix}-`));
  return join(dir, 'history.db');
}

const userMessage = (content: string) => ({ role: 'user' as const, content, status: 'complete' as const, createdAt: new Date().toISOString() });

it('keeps the database in WAL mode, and moves the WAL into the database file from its worker', async () => {
  const path = freshDatabase('wal');
  const history = await SqliteHistory.open({ path, logger });
  try {
    const other = new DatabaseSync(path);
    expect(other.prepare('PRAGMA journal_mode').get()).toMatchObject({ journal_mode: 'wal' });
    other.close();
    const initial = statSync(path).size;
    // About 2 MB: well under the writer's own checkpoint threshold, so only the worker moves it.
    await Promise.all(Array.from({ length: 200 }, (_, i) => history.append(`o/s${i}`, userMessage('x'.repeat(10_000)), { keepLast: 10 })));
    expect(statSync(`${path}-wal`).size).toBeGreaterThan(2_000_000);
    await vi.waitFor(() => expect(statSync(path).size).toBeGreaterThan(initial + 2_000_000), { timeout: 5000, interval: 50 });
  } finally {
    await history.close();
  }
});

it('closes to the end in a process that has nothing else to do (the checkpoint worker waited for, the WAL folded in)', async () => {
  const path = freshDatabase('close');
  const child = spawnNode(['--import', 'tsx', 'test/helpers/sqlite-close-child.ts', path]);
  let out = '';
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  expect([code, out]).toEqual([0, 'closed\n']);
  // The last connection to close checkpoints the WAL into the file and removes it.
  expect(existsSync(`${path}-wal`)).toBe(false);
});

it("keeps a SIGKILLed process's running reply as interrupted, with the text it had checkpointed", async () => {
  const path = freshDatabase('crash');
  const child = spawnNode(['--import', 'tsx', 'test/helpers/sqlite-crash-child.ts', path]);
  let out = '';
  let errors = '';
  child.stderr!.on('data', (chunk: Buffer) => (errors += chunk.toString()));
  // The number of the last word whose checkpoint the child saw resolve (complete lines only).
  let acknowledged = -1;
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const lines = out.slice(0, out.lastIndexOf('\n')).split('\n');
      acknowledged = Number(lines.at(-1));
      if (acknowledged >= 200) resolve();
    });
    child.once('exit', (code) => reject(new Error(`the child exited with ${code}: ${errors}`)));
  });
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  expect(await exited).toEqual([null, 'SIGKILL']);

  const history = await SqliteHistory.open({ path, logger });
  try {
    const messages = await history.read('o/s');
    expect(messages.map((m) => [m.seq, m.role, m.status])).toEqual([
      [1, 'user', 'complete'],
      [2, 'assistant', 'interrupted'],
    ]);
    // Every checkpoint that resolved is there (and maybe one or two the child wrote after).
    const words = messages[1]!.content.trim().split(' ');
    expect(words.length).toBeGreaterThan(acknowledged);
    expect(words).toEqual(words.map((_, i) => `w${i}`));
    expect(messages[1]!.draftOf).toBe('reply-1');
    // The session takes new messages at once.
    const next = userMessage('go on');
    expect(await history.append('o/s', next, { keepLast: 100 })).toBe(3);
  } finally {
    await history.close();
  }
});

it('backs up online as docs/stores.md says (VACUUM INTO through the driver), into a file the store opens', async () => {
  const path = freshDatabase('backup');
  const history = await SqliteHistory.open({ path, logger });
  try {
    await history.append('o/s', userMessage('keep me'), { keepLast: 10 });
    await history.checkpoint('o/s', 'r', 'half');
    // The command of docs/stores.md, run from the repository (where node_modules has the driver) while the store is open.
    const backup = join(dirname(path), 'backup.db');
    const child = spawnNode(['-e', `new (require('@photostructure/sqlite').DatabaseSync)(${JSON.stringify(path)}).exec("VACUUM INTO '${backup}'")`], {
      cwd: REPO_ROOT,
    });
    expect(await once(child, 'exit')).toEqual([0, null]);
    const restored = await SqliteHistory.open({ path: backup, logger });
    try {
      expect((await restored.read('o/s')).map((m) => [m.content, m.status])).toEqual([
        ['keep me', 'complete'],
        ['half', 'interrupted'],
      ]);
    } finally {
      await restored.close();
    }
  } finally {
    await history.close();
  }
});

it('migrates a new file once, and says so when a newer release has migrated it further', async () => {
  const path = freshDatabase('migrate');
  const first = captureLogs('info');
  await (await SqliteHistory.open({ path, logger: first.logger })).close();
  expect(first.lines.filter((l) => l.msg === 'history: schema migrated')).toHaveLength(1);
  const db = new DatabaseSync(path);
  db.exec("INSERT INTO history_migrations (version, name, applied_at) VALUES (999, 'from the future', 0)");
  db.close();
  const again = captureLogs('info');
  await (await SqliteHistory.open({ path, logger: again.logger })).close();
  expect(again.lines.map((l) => [l.msg, l.version])).toEqual([['history: the schema is newer than this release knows', 999]]);
});

it('finds the drafts a crash left through an index of drafts alone: start-up reads none of the finished messages', async () => {
  const path = freshDatabase('drafts');
  await (await SqliteHistory.open({ path, logger: pino({ level: 'silent' }) })).close();
  const db = new DatabaseSync(path);
  try {
    // The statement the store runs before it takes requests (placeholders as the store writes them).
    const plan = db.prepare(`EXPLAIN QUERY PLAN ${draftsStep(1000).sql.replace(/\$(\d+)/g, '?$1')}`).all(1000) as Array<{ detail: string }>;
    expect(plan.map((row) => row.detail)).toEqual(['SCAN history_messages USING INDEX history_messages_drafts']);
  } finally {
    db.close();
  }
});

it('skips a row that is not a message (written by hand, a BLOB for its text) and reads the rest', async () => {
  const path = freshDatabase('corrupt');
  const logs = captureLogs('warn');
  const history = await SqliteHistory.open({ path, logger: logs.logger });
  try {
    await history.append('o/s', userMessage('first'), { keepLast: 10 });
    await history.append('o/s', userMessage('second'), { keepLast: 10 });
    await history.append('o/s', userMessage('third'), { keepLast: 10 });
    const db = new DatabaseSync(path);
    db.exec("UPDATE history_messages SET content = X'6E6F742074657874' WHERE session_key = 'o/s' AND seq = 2");
    db.close();
    expect((await history.read('o/s')).map((m) => [m.seq, m.content])).toEqual([
      [1, 'first'],
      [3, 'third'],
    ]);
    expect(logs.lines.filter((l) => l.msg === 'skipped a corrupt history entry').map((l) => l.seq)).toEqual([2]);
  } finally {
    await history.close();
  }
});

it('fails only the write that broke a constraint: the others of its transaction are written', async () => {
  const path = freshDatabase('constraint');
  const history = await SqliteHistory.open({ path, logger });
  try {
    await history.append('o/broken', userMessage('first'), { keepLast: 10 });
    // Edited by hand: the session's next position is one it already holds, so its next write breaks the primary key.
    const db = new DatabaseSync(path);
    db.exec("UPDATE history_sessions SET next_seq = 1 WHERE session_key = 'o/broken'");
    db.close();
    // Called in one turn of the event loop: one transaction, rolled back, then each write alone.
    const results = await Promise.allSettled([
      history.append('o/broken', userMessage('second'), { keepLast: 10 }),
      history.append('o/fine', userMessage('kept'), { keepLast: 10 }),
    ]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'fulfilled']);
    expect((await history.read('o/fine')).map((m) => m.content)).toEqual(['kept']);
    expect((await history.read('o/broken')).map((m) => m.content)).toEqual(['first']);
  } finally {
    await history.close();
  }
});

it('ends every draft a crash left at start-up, however many (the store lists them a thousand at a time)', async () => {
  const history = await SqliteHistory.open({ path: freshDatabase('drafts'), logger });
  try {
    const createdAt = new Date().toISOString();
    await Promise.all(
      Array.from({ length: 1100 }, (_, i) =>
        history.begin(`o/s${i}`, { role: 'user', content: 'hi', status: 'complete', createdAt }, { keepLast: 10, replyId: `r${i}` }),
      ),
    );
    expect(await endCrashedDrafts(history, { keepLast: 10, logger })).toBe(1100);
    expect(await history.drafts()).toEqual([]);
    expect((await history.read('o/s1099')).map((m) => m.status)).toEqual(['complete', 'interrupted']);
  } finally {
    await history.close();
  }
});

it('refuses a second store on the same file while the first is open (its start-up would end the first one’s running replies)', async () => {
  const path = freshDatabase('lock');
  const first = await SqliteHistory.open({ path, logger });
  try {
    await expect(SqliteHistory.open({ path, logger })).rejects.toThrow(/in use by another Sluice/);
  } finally {
    await first.close();
  }
  // Closed (or its process gone), the file is free again.
  const second = await SqliteHistory.open({ path, logger });
  await second.close();
});

it('says why it cannot take the lock when the directory is read-only, not that another Sluice has it', async () => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-ro-'));
  chmodSync(dir, 0o755);
  const data = join(dir, 'data');
  const path = join(data, 'history.db');
  await (await SqliteHistory.open({ path, logger })).close();
  // A DATA_DIR its user may read but not write: SQLite cannot put the lock's journal beside it.
  // Root writes anywhere, so then the store runs as nobody.
  const root = process.getuid?.() === 0;
  if (root) execFileSync('chown', ['-R', 'nobody', data]);
  chmodSync(data, 0o555);
  try {
    const args = ['--import', 'tsx', 'test/helpers/sqlite-open-child.ts', path];
    const [command, argv] = root ? ['runuser', ['-u', 'nobody', '--', process.execPath, ...args]] : [process.execPath, args];
    const out = execFileSync(command, argv, { cwd: REPO_ROOT, encoding: 'utf8' });
    const { message, cause } = JSON.parse(out) as { message: string; cause: string };
    expect(message).not.toMatch(/in use by another Sluice/);
    expect(message).toMatch(/Cannot take the history database's lock/);
    expect(cause).toMatch(/readonly database/);
  } finally {
    chmodSync(data, 0o755);
  }
});

it('is not healthy while its writes fail (another process holds the write lock), and is again once one goes through', async () => {
  const path = freshDatabase('locked');
  const history = await SqliteHistory.open({ path, logger });
  const other = new DatabaseSync(path);
  try {
    const message = userMessage('hi');
    expect(await history.healthy()).toBe(true);
    other.exec('BEGIN IMMEDIATE');
    await expect(history.append('o/s', message, { keepLast: 10 })).rejects.toMatchObject({ code: 'unavailable' });
    // /ready must not send traffic to an instance that cannot store a turn.
    expect(await history.healthy()).toBe(false);
    other.exec('ROLLBACK');
    // Nothing else writes: the health check finds out by itself.
    expect(await history.healthy()).toBe(true);
    await history.append('o/s', message, { keepLast: 10 });
  } finally {
    other.close();
    await history.close();
  }
});
