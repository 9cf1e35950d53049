import type { CliOptions } from './args.ts';
import { connect, newSessionId, preflight } from './connection.ts';
import { EXIT, type ExitCode } from './exit-codes.ts';
import { outcomeLine, styleFor, transportLabel } from './format.ts';
import { runReply, type ReplyOutcome } from './reply.ts';
import { replyTextFor, textFor } from './terminal-text.ts';

export const CONNECT_TIMEOUT_MS = 10_000;
/** One-shot mode gives up on a reply whose connection stays lost this long. */
export const GIVE_UP_AFTER_MS = 30_000;

export function exitCodeFor(outcome: ReplyOutcome): ExitCode {
  switch (outcome.kind) {
    case 'complete':
      return EXIT.ok;
    case 'failed':
      return EXIT.failed;
    case 'connection':
      return EXIT.connection;
    case 'refused':
      return EXIT.refused;
    case 'cancelled':
      return outcome.by === 'user' ? EXIT.interrupted : EXIT.cancelled;
  }
}

/** `--message`: the reply on stdout, everything else on stderr, and an exit code that says how it went. */
export async function runOneShot(options: CliOptions & { readonly message: string }): Promise<ExitCode> {
  const { stdout, stderr } = process;
  const style = styleFor(stderr, process.env);
  const replyText = replyTextFor(stdout);
  const showErr = textFor(stderr);
  const sessionId = options.session ?? newSessionId();
  const conn = connect(options);
  conn.watch.notice = (text) => stderr.write(`\n${style.dim(`[${text}]`)}\n`);
  const interrupt = new AbortController();
  const onSignal = (): void => interrupt.abort();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // A reader that went away (`| head`) wants no more: stop the reply, as Ctrl-C would.
  const onOutputError = (error: NodeJS.ErrnoException): void => {
    if (error.code !== 'EPIPE') throw error;
    interrupt.abort();
  };
  stdout.on('error', onOutputError);
  try {
    const ready = await preflight(conn.client, CONNECT_TIMEOUT_MS, interrupt.signal);
    if (!ready.ok) {
      if (interrupt.signal.aborted) return EXIT.interrupted;
      stderr.write(`sluice-chat: cannot reach ${options.url}: ${showErr(ready.reason)}\n`);
      return ready.refused ? EXIT.refused : EXIT.connection;
    }
    if (!options.quiet) {
      stderr.write(style.dim(`connected to ${options.url} over ${transportLabel(conn.transport())} · session ${sessionId}`) + '\n');
    }
    conn.watch.replying = true;
    let wrote = false;
    const outcome = await runReply(
      conn.client,
      { message: options.message, sessionId, signal: interrupt.signal, giveUpAfterMs: GIVE_UP_AFTER_MS },
      {
        text: (delta) => {
          wrote = true;
          if (!stdout.destroyed) stdout.write(replyText.show(delta));
        },
        connection: (state) => (state === 'lost' ? conn.watch.lost() : conn.watch.back()),
      },
    );
    if (wrote && !stdout.destroyed) stdout.write(`${replyText.end()}\n`);
    if (outcome.kind === 'cancelled' && outcome.by === 'user' && stdout.destroyed) return EXIT.interrupted;
    if (outcome.kind !== 'complete') stderr.write(`sluice-chat: ${showErr(outcomeLine(outcome))}\n`);
    else if (!options.quiet) stderr.write(style.dim(`(${showErr(outcomeLine(outcome))})`) + '\n');
    return exitCodeFor(outcome);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    stdout.off('error', onOutputError);
    await conn.close();
  }
}
