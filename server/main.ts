import { createSluice } from './app.ts';
import { ConfigError, loadConfig } from './config.ts';

let config;
try {
  config = loadConfig(process.env, process.argv.slice(2));
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  console.error(`sluice: ${error.message}`);
  process.exit(2);
}

const sluice = createSluice(config);
const { url } = await sluice.listen();
sluice.logger.info({ url, provider: config.LLM_PROVIDER, store: sluice.store.kind }, `Sluice listening on ${url}`);

const shutdown = (signal: string): void => {
  sluice.logger.info({ signal }, 'shutting down');
  sluice.close().then(
    () => process.exit(0),
    (error: unknown) => {
      sluice.logger.error({ err: error }, 'shutdown failed');
      process.exit(1);
    },
  );
};
process.once('SIGTERM', () => shutdown('SIGTERM'));
process.once('SIGINT', () => shutdown('SIGINT'));
