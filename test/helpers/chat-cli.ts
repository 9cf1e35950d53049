import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { spawnNode } from './children.ts';

/** The `sluice-chat` bin, as client/package.json names it: compiled, run by plain node. */
export const CHAT_BIN = ['node', 'client/dist/client/cli/main.js'] as const;

export interface ChatProcess {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code. */
  readonly exited: Promise<number | null>;
}

/** Starts `sluice-chat` with pipes (no terminal), as a script would; `input`, if given, is all its stdin. */
export function spawnChat(args: readonly string[], env: Record<string, string> = {}, input?: string): ChatProcess {
  const stdin = input === undefined ? 'ignore' : 'pipe';
  const child = spawnNode([CHAT_BIN[1], ...args], { env: { ...process.env, NO_COLOR: '1', ...env }, stdio: [stdin, 'pipe', 'pipe'] });
  if (input !== undefined) child.stdin!.end(input);
  let out = '';
  let err = '';
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const exited = once(child, 'close').then(([code]) => code as number | null);
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** Runs `sluice-chat` to the end. */
export async function runChat(args: readonly string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const chat = spawnChat(args, env);
  const code = await chat.exited;
  return { code, stdout: chat.stdout(), stderr: chat.stderr() };
}
