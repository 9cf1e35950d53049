import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnNode } from './children.ts';

export interface SluiceProcess {
  readonly url: string;
  readonly child: ChildProcess;
  /** Everything it printed so far (pino JSON lines). */
  output(): string;
  /** Sends a signal and waits for the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Starts `server/main.ts` as a real process on a free port and waits until it listens. Its embedded
 * store goes to a directory of its own unless `DATA_DIR` is given (give the same one to a restart).
 * `via`: a command that runs node (see spawnNode).
 */
export async function startSluiceProcess(env: Record<string, string | number>, via: readonly string[] = []): Promise<SluiceProcess> {
  const dataDir = env.DATA_DIR === undefined ? { DATA_DIR: mkdtempSync(join(tmpdir(), 'sluice-data-')) } : {};
  const child = spawnNode(
    ['--import', 'tsx', 'server/main.ts'],
    { env: { ...process.env, PORT: '0', LOG_LEVEL: 'info', ...dataDir, ...Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v)])) } },
    via,
  );
  let out = '';
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const onData = (): void => {
      const match = /"url":"(http:\/\/[^"]+)"/.exec(out);
      if (match) {
        child.stdout!.off('data', onData);
        resolve(match[1]!);
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`sluice exited with ${code}: ${out}`)));
  });
  return {
    url,
    child,
    output: () => out,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      const exited = once(child, 'exit');
      child.kill(signal);
      const [code] = await exited;
      return code as number | null;
    },
  };
}
