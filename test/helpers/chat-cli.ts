import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { afterEach } from 'vitest';

/** The `sluice-chat` bin, as package.json names it. */
export const CHAT_BIN = ['node', 'client/cli/sluice-chat.js'] as const;

const root = fileURLToPath(new URL('../..', import.meta.url));
const children = new Set<ChildProcess>();
afterEach(async () => {
  for (const child of [...children]) {
    children.delete(child);
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      await exited;
    }
  }
});

export interface ChatProcess {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code. */
  readonly exited: Promise<number | null>;
}

/** Starts `sluice-chat` with pipes (no terminal), as a script would. */
export function spawnChat(args: readonly string[], env: Record<string, string> = {}): ChatProcess {
  const child = spawn(process.execPath, [CHAT_BIN[1], ...args], {
    cwd: root,
    env: { ...process.env, NO_COLOR: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const exited = once(child, 'close').then(([code]) => {
    children.delete(child);
    return code as number | null;
  });
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** Runs `sluice-chat` to the end. */
export async function runChat(args: readonly string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const chat = spawnChat(args, env);
  const code = await chat.exited;
  return { code, stdout: chat.stdout(), stderr: chat.stderr() };
}
