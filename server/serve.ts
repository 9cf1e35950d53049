import { createSluice } from './app.ts';
import type { Config } from './config.ts';

/** Runs one Sluice server in this process until SIGTERM/SIGINT, then shuts it down gracefully. */
export async function serve(config: Config): Promise<void> {
  let sluice;
  try {
    sluice = await createSluice(config);
  } catch (error) {
    console.error(`sluice: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(2);
  }
  const { url } = await sluice.listen();
  sluice.logger.info({ url, provider: config.LLM_PROVIDER, store: sluice.store.kind }, `Sluice listening on ${url}`);

  // An error in one stream must never take the others down: log it and keep serving.
  process.on('unhandledRejection', (reason) => sluice.logger.error({ err: reason }, 'unhandled rejection'));
  process.on('uncaughtException', (error) => sluice.logger.error({ err: error }, 'uncaught exception'));

  const shutdown = (signal: string): void => {
    sluice.logger.info({ signal }, 'shutting down: draining running replies');
    sluice.shutdown().then(
      () => process.exit(0),
      (error: unknown) => {
        sluice.logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  // A second signal while draining is harmless: shutdown() is idempotent.
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}
