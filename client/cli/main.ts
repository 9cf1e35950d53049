#!/usr/bin/env node
/**
 * sluice-chat: a terminal chat client for Sluice, built on the typed client (client/).
 * `npm run chat -- --help`, or the `sluice-chat` bin.
 */
import { parseCliArgs, USAGE, UsageError } from './args.ts';
import { EXIT } from './exit-codes.ts';
import { runInteractive } from './interactive.ts';
import { runOneShot } from './one-shot.ts';

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseCliArgs(process.argv.slice(2), process.env);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`sluice-chat: ${error.message}\n\n${USAGE}`);
    return EXIT.usage;
  }
  if (parsed.kind === 'help') {
    process.stdout.write(USAGE);
    return EXIT.ok;
  }
  const { options } = parsed;
  return options.message !== undefined ? runOneShot({ ...options, message: options.message }) : runInteractive(options);
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`sluice-chat: ${(error as Error)?.stack ?? String(error)}\n`);
    process.exit(EXIT.failed);
  },
);
