import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import { requireBinary } from './binaries.ts';
import { freePort } from './ports.ts';

export interface RedisServer {
  readonly url: string;
  readonly port: number;
  /** Stops the server (data is lost: no persistence). */
  stop(): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
  /** A clean restart (SIGTERM, then start): a persistent server keeps its data. */
  restart(): Promise<void>;
}

const running = new Set<ChildProcess>();
afterEach(async () => {
  for (const child of [...running]) await stopChild(child);
});

async function stopChild(child: ChildProcess): Promise<void> {
  running.delete(child);
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited;
}

/**
 * A real redis-server on a free port, stopped after the test. Undefined when it is not installed
 * locally. `persistent`: with an append-only file (every write synced), so that a restart keeps
 * what it had.
 */
export async function startRedis(options: { persistent?: boolean } = {}): Promise<RedisServer | undefined> {
  const binary = requireBinary('redis-server');
  if (!binary) return undefined;
  const port = await freePort();
  const persistence = options.persistent
    ? ['--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--dir', mkdtempSync(join(tmpdir(), 'sluice-redis-'))]
    : ['--save', '', '--appendonly', 'no'];
  let child: ChildProcess | undefined;
  const start = async (): Promise<void> => {
    const proc = spawn(binary, ['--port', String(port), '--bind', '127.0.0.1', ...persistence], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    running.add(proc);
    child = proc;
    let out = '';
    await new Promise<void>((resolve, reject) => {
      proc.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('Ready to accept connections')) resolve();
      });
      proc.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${out}`)));
    });
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    start,
    stop: async () => {
      if (child) await stopChild(child);
    },
    restart: async () => {
      const proc = child;
      if (proc && proc.exitCode === null && proc.signalCode === null) {
        running.delete(proc);
        const exited = once(proc, 'exit');
        proc.kill('SIGTERM');
        await exited;
      }
      await start();
    },
  };
}
