import { Writable } from 'node:stream';
import { pino, type Logger, type LevelWithSilent } from 'pino';

/** A real pino logger whose JSON lines are kept in `lines`, for tests that read the logs. */
export function captureLogs(level: LevelWithSilent): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino(
    { level },
    new Writable({
      write(chunk, _encoding, done) {
        lines.push(JSON.parse(String(chunk)) as Record<string, unknown>);
        done();
      },
    }),
  );
  return { logger, lines };
}
