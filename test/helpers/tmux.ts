import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, vi } from 'vitest';
import { requireBinary } from './binaries.ts';

export interface TmuxTerminal {
  /** Types text (literally, no key names) without pressing Enter. */
  type(text: string): Promise<void>;
  /** Presses keys by tmux name: `Enter`, `C-c`, `C-d`. */
  press(...keys: string[]): Promise<void>;
  /** Types a line and presses Enter. */
  line(text: string): Promise<void>;
  /** What the terminal shows, scrollback included, wrapped lines joined. */
  screen(): Promise<string>;
  /** Waits until the screen satisfies `check` (a pattern, or a function that throws until it holds). */
  waitFor(check: RegExp | ((screen: string) => void), timeoutMs?: number): Promise<string>;
  /** Kills the terminal and its programs. Safe to call twice. */
  kill(): Promise<void>;
}

const root = fileURLToPath(new URL('../..', import.meta.url));
const live = new Set<TmuxTerminal>();
let counter = 0;

afterEach(async () => {
  for (const terminal of [...live]) await terminal.kill();
});

function tmux(binary: string, socket: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(binary, ['-L', socket, '-f', '/dev/null', ...args], { encoding: 'utf8' }, (error, stdout, stderr) =>
      error ? reject(new Error(`tmux ${args[0]}: ${stderr || error.message}`)) : resolve(stdout),
    ),
  );
}

const shellQuote = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`;

/**
 * Runs `argv` (from the repository root) in a real terminal: a detached tmux session on a socket of
 * its own, `cols`×`rows`. When the program exits, the terminal shows `[exited <code>]` and stays.
 * Undefined when tmux is not installed locally.
 */
export async function startInTmux(
  argv: readonly string[],
  options: { env?: Record<string, string>; cols?: number; rows?: number } = {},
): Promise<TmuxTerminal | undefined> {
  const binary = requireBinary('tmux');
  if (!binary) return undefined;
  const socket = `sluice-test-${process.pid}-${++counter}-${Date.now()}`;
  const env = Object.entries({ TERM: 'xterm-256color', ...options.env })
    .map(([k, v]) => `${k}=${shellQuote(v)}`)
    .join(' ');
  const command = `cd ${shellQuote(root)} && env ${env} ${argv.map(shellQuote).join(' ')}; echo "[exited $?]"; exec sleep 3600`;
  await tmux(binary, socket, ['new-session', '-d', '-s', 'main', '-x', String(options.cols ?? 160), '-y', String(options.rows ?? 50), command]);

  let killed: Promise<void> | undefined;
  const terminal: TmuxTerminal = {
    type: async (text) => void (await tmux(binary, socket, ['send-keys', '-t', 'main', '-l', text])),
    press: async (...keys) => void (await tmux(binary, socket, ['send-keys', '-t', 'main', ...keys])),
    line: async (text) => {
      await terminal.type(text);
      await terminal.press('Enter');
    },
    screen: () => tmux(binary, socket, ['capture-pane', '-p', '-J', '-t', 'main', '-S', '-']),
    waitFor: async (check, timeoutMs = 15_000) => {
      let last = '';
      await vi.waitFor(
        async () => {
          last = await terminal.screen();
          if (check instanceof RegExp) expect(last).toMatch(check);
          else check(last);
        },
        { timeout: timeoutMs, interval: 50 },
      );
      return last;
    },
    kill: () => {
      killed ??= (async () => {
        live.delete(terminal);
        await tmux(binary, socket, ['kill-server']).catch(() => undefined);
      })();
      return killed;
    },
  };
  live.add(terminal);
  return terminal;
}
