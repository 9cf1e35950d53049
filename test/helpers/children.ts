import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { afterEach } from 'vitest';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

const running = new Set<ChildProcess>();
// A child a test left running (a failed assertion, say) must not outlive it.
afterEach(async () => {
  for (const child of [...running]) {
    running.delete(child);
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      await exited;
    }
  }
});

/**
 * `node <args>` from the repository root, with piped output; killed after the test if still running.
 * `via`: a command that runs node (`nsenter -t <pid> -m --`, say).
 */
export function spawnNode(args: readonly string[], options: SpawnOptions = {}, via: readonly string[] = []): ChildProcess {
  const [command, ...prefix] = [...via, process.execPath];
  const child = spawn(command, [...prefix, ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], ...options });
  running.add(child);
  child.once('exit', () => running.delete(child));
  return child;
}
