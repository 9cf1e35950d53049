import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

// Targets that run Sluice on Redis (several workers share it) need a redis-server: one is started
// for the whole bench run, on a free port, and stopped when the run is over (`stopBenchRedis`),
// or killed if the bench exits some other way. The Cluster target gets a cluster of three masters,
// started the same way.

let started: Promise<string | undefined> | undefined;
let child: ChildProcess | undefined;
let clusterStarted: Promise<string | undefined> | undefined;
const clusterNodes: ChildProcess[] = [];
process.once('exit', () => {
  child?.kill('SIGKILL');
  for (const node of clusterNodes) node.kill('SIGKILL');
});

function installed(program = 'redis-server'): boolean {
  try {
    execFileSync('bash', ['-c', `command -v ${program}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** A port free on this machine now (for a server started next). */
export async function freePort(): Promise<number> {
  const probe = createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address() as { port: number };
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/** Starts a redis-server and resolves once it accepts connections. */
async function redisServer(args: readonly string[]): Promise<ChildProcess> {
  const server = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  await new Promise<void>((resolve, reject) => {
    server.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('Ready to accept connections')) resolve();
    });
    server.once('exit', (code) => reject(new Error(`redis-server exited with ${code}`)));
  });
  server.stdout.resume();
  return server;
}

/**
 * REDIS_CLUSTER_NODES of the bench's Redis Cluster (three masters holding every slot, on free
 * ports), or undefined when redis-server or redis-cli is not installed.
 */
export function benchRedisClusterNodes(): Promise<string | undefined> {
  clusterStarted ??= (async () => {
    if (!installed() || !installed('redis-cli')) return undefined;
    const ports = await Promise.all([freePort(), freePort(), freePort()]);
    for (const port of ports) {
      const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-cluster-'));
      const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir];
      clusterNodes.push(await redisServer([...args, '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, 'nodes.conf')]));
    }
    const nodes = ports.map((port) => `127.0.0.1:${port}`);
    await promisify(execFile)('redis-cli', ['--cluster', 'create', ...nodes, '--cluster-replicas', '0', '--cluster-yes']);
    // redis-cli returns once every node agrees on the slots; each must also say the cluster is ok.
    for (const port of ports) {
      for (let tries = 0; ; tries++) {
        const { stdout } = await promisify(execFile)('redis-cli', ['-p', String(port), 'cluster', 'info']);
        if (stdout.includes('cluster_state:ok')) break;
        if (tries > 100) throw new Error(`the bench's Redis Cluster is not ok: ${stdout}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    return nodes.join(',');
  })();
  return clusterStarted;
}

/** The URL of the bench's redis-server, or undefined when redis-server is not installed. */
export function benchRedisUrl(): Promise<string | undefined> {
  started ??= (async () => {
    if (!installed()) return undefined;
    const port = await freePort();
    child = await redisServer(['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
    return `redis://127.0.0.1:${port}`;
  })();
  return started;
}

/** Stops the bench's redis-servers, if any were started; their pipes would keep the bench from exiting. */
export async function stopBenchRedis(): Promise<void> {
  const all = [child, ...clusterNodes.splice(0)];
  child = undefined;
  started = undefined;
  clusterStarted = undefined;
  for (const c of all) {
    if (!c || c.exitCode !== null || c.signalCode !== null) continue;
    const exited = once(c, 'exit');
    c.kill('SIGTERM');
    await exited;
  }
}
