// Opens the SQLite store at argv[2] and prints why it could not, as JSON (run as another user by history-sqlite.test.ts).
import { pino } from 'pino';
import { SqliteHistory } from '../../server/core/store/history/sqlite.ts';

try {
  await (await SqliteHistory.open({ path: process.argv[2]!, logger: pino({ level: 'silent' }) })).close();
  console.log(JSON.stringify({ message: 'opened', cause: '' }));
} catch (error) {
  console.log(JSON.stringify({ message: (error as Error).message, cause: String(((error as Error).cause as Error | undefined)?.message) }));
}
