// First: SIGHUP must not end a process that is starting (see hangups.ts).
import './hangups.ts';
import cluster from 'node:cluster';
import { availableParallelism } from 'node:os';
import { runPrimary } from './cluster-primary.ts';
import { ConfigError, loadConfig, type Config } from './config.ts';
import { serve } from './serve.ts';

let config: Config;
try {
  config = loadConfig(process.env, process.argv.slice(2));
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  console.error(`sluice: ${error.message}`);
  process.exit(2);
}

const workers = config.WORKERS === 0 ? availableParallelism() : config.WORKERS;
if (cluster.isPrimary && workers > 1) await runPrimary(config, workers);
else await serve(config);
