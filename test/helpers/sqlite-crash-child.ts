/**
 * A process that writes to a SQLite history until it is killed: the user message, then
 * checkpoints of a growing reply ("w0 ", "w0 w1 ", ...), printing each word's number once its
 * checkpoint has resolved.   node --import tsx test/helpers/sqlite-crash-child.ts <database file>
 */
import { pino } from 'pino';
import { SqliteHistory } from '../../server/core/store/history/sqlite.ts';

const path = process.argv[2];
if (!path) throw new Error('usage: sqlite-crash-child.ts <database file>');
const history = await SqliteHistory.open({ path, logger: pino({ level: 'silent' }) });
await history.append('o/s', { role: 'user', content: 'tell me a long story', status: 'complete', createdAt: new Date().toISOString() }, { keepLast: 100 });
let text = '';
for (let i = 0; ; i++) {
  text += `w${i} `;
  await history.checkpoint('o/s', 'reply-1', text);
  process.stdout.write(`${i}\n`);
}
