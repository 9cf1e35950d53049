// What `npm start` runs (dist/server/main.mjs). An ES module's imports all load before its first
// line runs, and the server's packages take about half a second to: SIGHUP, whose default is to
// end the process, is taken here first (hangups.ts, which imports nothing), and the server is
// imported after (the bundle keeps it, with its packages, in a chunk of its own).
import './hangups.ts';

await import('./main.ts');
