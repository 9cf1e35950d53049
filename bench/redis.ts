import { spawn, type ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:net';
import { once } from 'node:events';

// Targets that run Sluice on Redis (several workers share it) need a redis-server: one is started
// for the whole bench run, on a free port, and stopped when the run is over (`stopBenchRedis`),
// or killed if the bench exits some other way.

let started: Promise<string | undefined> | undefined;
let child: ChildProcess | undefined;
process.once('exit', () => child?.kill('SIGKILL'));

function installed(): boolean {
  try {
    execFileSync('bash', ['-c', 'command -v redis-server'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** The URL of the bench's redis-server, or undefined when redis-server is not installed. */
export function benchRedisUrl(): Promise<string | undefined> {
  started ??= (async () => {
    if (!installed()) return undefined;
    const probe = createServer().listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const { port } = probe.address() as { port: number };
    await new Promise((resolve) => probe.close(resolve));
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    await new Promise<void>((resolve, reject) => {
      child!.stdout!.on('data', (c: Buffer) => {
        out += c.toString();
        if (out.includes('Ready to accept connections')) resolve();
      });
      child!.once('exit', (code) => reject(new Error(`redis-server exited with ${code}`)));
    });
    child.stdout!.resume();
    return `redis://127.0.0.1:${port}`;
  })();
  return started;
}

/** Stops the bench's redis-server, if one was started; its pipe would keep the bench from exiting. */
export async function stopBenchRedis(): Promise<void> {
  const c = child;
  child = undefined;
  started = undefined;
  if (!c || c.exitCode !== null || c.signalCode !== null) return;
  const exited = once(c, 'exit');
  c.kill('SIGTERM');
  await exited;
}
