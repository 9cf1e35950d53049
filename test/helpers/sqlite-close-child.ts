/**
 * A process whose only work is a SQLite history: it opens one, appends a message, closes it and
 * says so. Nothing else keeps it alive while the store closes.
 *   node --import tsx test/helpers/sqlite-close-child.ts <database file>
 */
import { pino } from 'pino';
import { SqliteHistory } from '../../server/core/store/history/sqlite.ts';

const path = process.argv[2];
if (!path) throw new Error('usage: sqlite-close-child.ts <database file>');
const history = await SqliteHistory.open({ path, logger: pino({ level: 'silent' }) });
await history.append('o/s', { role: 'user', content: 'hello', status: 'complete', createdAt: new Date().toISOString() }, { keepLast: 100 });
await history.close();
process.stdout.write('closed\n');
