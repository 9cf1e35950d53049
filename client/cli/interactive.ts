import { createInterface } from 'node:readline';
import type { CliOptions } from './args.ts';
import { connect, newSessionId, preflight } from './connection.ts';
import { EXIT, type ExitCode } from './exit-codes.ts';
import { historyText, outcomeLine, styleFor, transportLabel } from './format.ts';
import { CONNECT_TIMEOUT_MS, exitCodeFor } from './one-shot.ts';
import { runReply } from './reply.ts';
import { replyTextFor, textFor } from './terminal-text.ts';

const PROMPT = 'you> ';

export const COMMANDS = `Commands:
  /history   the session's messages (role, status, content)
  /help      this list
  /quit      leave (so do Ctrl-D, and Ctrl-C at the prompt)
Ctrl-C while a reply streams stops it (it is cancelled on the server).`;

/** The chat prompt: one reply at a time, streamed as it arrives. */
export async function runInteractive(options: CliOptions): Promise<ExitCode> {
  const { stdout } = process;
  const style = styleFor(stdout, process.env);
  const show = textFor(stdout);
  const sessionId = options.session ?? newSessionId();
  const conn = connect(options);
  const terminal = process.stdin.isTTY === true && stdout.isTTY === true;
  const rl = createInterface({ input: process.stdin, output: stdout, prompt: PROMPT, terminal });
  // Read from now on: lines piped in arrive before the connection is checked, and must not be lost.
  const lines = rl[Symbol.asyncIterator]();

  let current: AbortController | undefined;
  let midLine = false; // the reply's text has been written without a line end yet
  let closed = false;
  const starting = new AbortController();

  const say = (text: string): void => {
    if (current) {
      // Inside a reply: on lines of their own, then the reply goes on.
      stdout.write(`${midLine ? '\n' : ''}${text}\n`);
      midLine = false;
    } else {
      // At the prompt: above it, then the prompt again with what was typed.
      if (terminal) stdout.write('\r\x1b[K');
      stdout.write(`${text}\n`);
      if (!closed && !starting.signal.aborted) rl.prompt(true);
    }
  };
  conn.watch.notice = (text) => say(style.dim(`[${text}]`));

  const interrupt = (): void => {
    if (current) current.abort();
    else rl.close();
  };
  rl.on('SIGINT', interrupt);
  process.on('SIGINT', interrupt); // when stdin is not a terminal, Ctrl-C arrives as a signal
  rl.on('close', () => {
    closed = true;
    // At a terminal that is Ctrl-D: leave now. Piped, it is the end of the input: what was read still runs.
    if (!terminal) return;
    starting.abort();
    current?.abort();
  });

  try {
    const ready = await preflight(conn.client, CONNECT_TIMEOUT_MS, starting.signal);
    if (!ready.ok) {
      if (starting.signal.aborted) return EXIT.ok;
      process.stderr.write(`sluice-chat: cannot reach ${options.url}: ${textFor(process.stderr)(ready.reason)}\n`);
      return ready.refused ? EXIT.refused : EXIT.connection;
    }
    const transport = conn.transport();
    const fellBack = options.transport === 'auto' && transport === 'sse' ? ' (WebSocket unavailable)' : '';
    stdout.write(`${style.bold('Sluice chat')} · ${options.url} · over ${transportLabel(transport)}${fellBack} · session ${sessionId}\n`);
    stdout.write(style.dim('Type a message and press Enter. /help lists commands; Ctrl-C stops a reply; Ctrl-D quits.') + '\n');
    rl.prompt();

    for await (const raw of { [Symbol.asyncIterator]: () => lines }) {
      const line = raw.trim();
      if (line === '/quit' || line === '/exit') break;
      if (line === '/help') stdout.write(`${COMMANDS}\n`);
      else if (line === '/history') {
        try {
          const history = await conn.client.chat.history.query({ sessionId });
          stdout.write(`${show(historyText(sessionId, history.messages))}\n`);
        } catch (error) {
          stdout.write(style.red(`error: could not load the history: ${show((error as Error).message)}`) + '\n');
        }
      } else if (line.startsWith('/')) stdout.write(`unknown command ${line.split(/\s/, 1)[0]}; /help lists them\n`);
      else if (line !== '') {
        current = new AbortController();
        conn.watch.replying = true;
        const replyText = replyTextFor(stdout);
        const write = (text: string): void => {
          if (text.length === 0) return;
          stdout.write(text);
          midLine = !text.endsWith('\n');
        };
        const outcome = await runReply(
          conn.client,
          { message: line, sessionId, signal: current.signal },
          {
            text: (delta) => write(replyText.show(delta)),
            connection: (state) => (state === 'lost' ? conn.watch.lost() : conn.watch.back()),
          },
        );
        write(replyText.end());
        if (midLine) stdout.write('\n');
        midLine = false;
        conn.watch.replying = false;
        current = undefined;
        const summary = `(${show(outcomeLine(outcome))})`;
        stdout.write(`${exitCodeFor(outcome) === EXIT.ok || outcome.kind === 'cancelled' ? style.dim(summary) : style.red(summary)}\n`);
      }
      if (closed && terminal) break;
      if (!closed) rl.prompt();
    }
    return EXIT.ok;
  } finally {
    process.off('SIGINT', interrupt);
    rl.close();
    await conn.close();
  }
}
