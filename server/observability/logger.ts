import { pino, type Logger } from 'pino';

// Log lines are JSON on stdout, written off the event loop (sonic-boom, asynchronously) and in
// batches: a write goes out once 4 KB are waiting, or every 100 ms. Writing each line as it came
// cost a round trip through libuv's thread pool (and its lock) per line; with one reply at a time,
// the two lines of a reply were a fifth of the server's CPU. Lines still waiting are written when
// the process exits (pino flushes the destination on exit).
const BATCH_BYTES = 4096;
const FLUSH_EVERY_MS = 100;

export function createLogger(level: string, base: Record<string, unknown>): Logger {
  return pino({ level, base }, pino.destination({ dest: 1, sync: false, minLength: BATCH_BYTES, periodicFlush: FLUSH_EVERY_MS }));
}
