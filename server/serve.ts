import { createSluice } from './app.ts';
import type { Logger } from 'pino';
import type { Config } from './config.ts';
import { within } from '../shared/within.ts';
import { onHangup } from './hangups.ts';

/** Runs one Sluice server in this process until SIGTERM/SIGINT, then shuts it down gracefully; SIGHUP reads API_KEYS_FILE again. */
export async function serve(config: Config): Promise<void> {
  let sluice;
  try {
    sluice = await createSluice(config);
  } catch (error) {
    console.error(`sluice: ${withCauses(error)}`);
    process.exit(2);
  }
  let url: string;
  try {
    ({ url } = await sluice.listen());
  } catch (error) {
    console.error(`sluice: cannot listen on ${config.HOST}:${config.PORT}: ${listenProblem(error)}`);
    await sluice.close().catch(() => undefined);
    process.exit(2);
  }
  sluice.logger.info({ url, provider: config.LLM_PROVIDER, store: sluice.store.kind }, `Sluice listening on ${url}`);

  // An error in one stream must never take the others down: log it and keep serving.
  process.on('unhandledRejection', (reason) => sluice.logger.error({ err: reason }, 'unhandled rejection'));
  process.on('uncaughtException', (error) => sluice.logger.error({ err: error }, 'uncaught exception'));

  const shutdown = (signal: string): void => {
    sluice.logger.info({ signal }, 'shutting down: draining running replies');
    sluice.shutdown().then(
      () => exitAfterLog(sluice.logger, 0),
      (error: unknown) => {
        sluice.logger.error({ err: error }, 'shutdown failed');
        exitAfterLog(sluice.logger, 1);
      },
    );
  };
  // A second signal while draining is harmless: shutdown() is idempotent.
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  // The usual "reload": a rotated key without a restart.
  onHangup(() => sluice.reloadKeys());
}

/**
 * Writes the log lines still waiting, then exits. Left to the exit itself, they are written
 * synchronously, and sonic-boom (pino's stream, 4.x) retries a write to a pipe nobody reads (EPIPE)
 * forever: the process never ends. Written here first, a broken pipe is found by the asynchronous
 * write, whose error pino takes as the end of logging.
 */
function exitAfterLog(logger: Logger, code: number): void {
  void within(new Promise<void>((resolve) => logger.flush(() => resolve())), LOG_FLUSH_MS, () => undefined).then(() => process.exit(code));
}

/** How long the exit waits for the log to be written. */
const LOG_FLUSH_MS = 2000;

/** An error's message and its causes' (a driver's reason under "Cannot open the history database"), on one line. */
function withCauses(error: unknown): string {
  let text = error instanceof Error ? error.message : String(error);
  for (let cause = (error as Error | undefined)?.cause; cause instanceof Error; cause = cause.cause) {
    if (!text.includes(cause.message)) text += `: ${cause.message}`;
  }
  return text;
}

const LISTEN_PROBLEMS: Readonly<Record<string, string>> = {
  EADDRINUSE: 'the address is in use',
  EACCES: 'permission denied (a port below 1024 needs privileges)',
  EADDRNOTAVAIL: 'this machine has no such address',
};

function listenProblem(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  const known = code === undefined ? undefined : LISTEN_PROBLEMS[code];
  return known ? `${known} (${code})` : withCauses(error);
}
