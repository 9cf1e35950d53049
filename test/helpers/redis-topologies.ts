import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Cluster, Redis } from 'ioredis';
import { afterAll } from 'vitest';
import { requireBinary } from './binaries.ts';
import { freePort } from './ports.ts';

// Redis deployments beyond one server, made of real redis-server processes (Debian's: sentinels
// are `redis-server --sentinel`, cluster nodes `--cluster-enabled yes` joined by
// `redis-cli --cluster create`), and a test CA for TLS made with openssl. Each takes seconds to
// form, so a test file starts one for all its tests; everything is stopped after the file.

const run = promisify(execFile);

/** One redis-server process (a data node or a sentinel). */
export interface RedisProcess {
  readonly port: number;
  readonly child: ChildProcess;
  /** SIGKILL, as a crash would. */
  kill(): Promise<void>;
}

const started = new Set<ChildProcess>();
afterAll(async () => {
  for (const child of [...started]) await killChild(child);
});

async function killChild(child: ChildProcess): Promise<void> {
  started.delete(child);
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited;
}

/** The binaries a topology needs; undefined (skip) when one is missing, a failure under SLUICE_REQUIRE_BINARIES=1. */
function binaries(...names: string[]): Record<string, string> | undefined {
  const found: Record<string, string> = {};
  for (const name of names) {
    const path = requireBinary(name);
    if (!path) return undefined;
    found[name] = path;
  }
  return found;
}

/** Starts redis-server with `args` (a config file first, if any) and waits until it serves. */
async function launch(redisServer: string, port: number, args: readonly string[], ready = 'Ready to accept connections'): Promise<RedisProcess> {
  const child = spawn(redisServer, [...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  started.add(child);
  let out = '';
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      out += chunk.toString();
      if (out.includes(ready)) {
        child.stdout.off('data', onData);
        child.stdout.resume();
        resolve();
      }
    };
    child.stdout.on('data', onData);
    child.stderr.resume();
    child.once('exit', (code) => reject(new Error(`redis-server on ${port} exited with ${code}: ${out}`)));
  });
  return { port, child, kill: () => killChild(child) };
}

/** Polls `check` (a few times a second) until it holds; fails after `timeoutMs`. */
export async function until(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A short-lived admin connection (no retries) for one command. */
async function ask<T>(port: number, command: (redis: Redis) => Promise<T>, tls?: TestCa): Promise<T> {
  const redis = new Redis({
    port,
    host: '127.0.0.1',
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    lazyConnect: true,
    ...(tls ? { tls: { ca: tls.caPem } } : {}),
  });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    return await command(redis);
  } finally {
    redis.disconnect();
  }
}

const NO_PERSISTENCE = ['--save', '', '--appendonly', 'no'];

export interface TestCa {
  readonly dir: string;
  /** The CA certificate's file (what REDIS_TLS_CA_FILE names). */
  readonly caFile: string;
  readonly caPem: string;
  /** A certificate for 127.0.0.1 and localhost, signed by the CA, and its key. */
  readonly certFile: string;
  readonly keyFile: string;
}

/** A CA and a server certificate for 127.0.0.1, made with openssl in a temporary directory. */
export async function makeTestCa(): Promise<TestCa | undefined> {
  const bins = binaries('openssl');
  if (!bins) return undefined;
  const openssl = bins.openssl!;
  const dir = mkdtempSync(join(tmpdir(), 'sluice-ca-'));
  const at = (name: string): string => join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await run(openssl, ['req', '-x509', ...ec, '-keyout', at('ca.key'), '-out', at('ca.crt'), '-days', '2', '-subj', '/CN=Sluice test CA']);
  await run(openssl, ['req', ...ec, '-keyout', at('server.key'), '-out', at('server.csr'), '-subj', '/CN=localhost']);
  writeFileSync(at('san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  await run(openssl, [
    'x509',
    '-req',
    '-in',
    at('server.csr'),
    '-CA',
    at('ca.crt'),
    '-CAkey',
    at('ca.key'),
    '-CAcreateserial',
    '-out',
    at('server.crt'),
    '-days',
    '2',
    '-extfile',
    at('san.ext'),
  ]);
  return { dir, caFile: at('ca.crt'), caPem: readFileSync(at('ca.crt'), 'utf8'), certFile: at('server.crt'), keyFile: at('server.key') };
}

/** redis-server arguments that serve TLS only, on `port`, with the test CA's certificate. */
function tlsArgs(ca: TestCa, port: number): string[] {
  return [
    '--port',
    '0',
    '--tls-port',
    String(port),
    '--tls-cert-file',
    ca.certFile,
    '--tls-key-file',
    ca.keyFile,
    '--tls-ca-cert-file',
    ca.caFile,
    '--tls-auth-clients',
    'no',
  ];
}

/** One redis-server that speaks TLS only. */
export async function startTlsRedis(ca: TestCa): Promise<{ url: string; server: RedisProcess } | undefined> {
  const bins = binaries('redis-server');
  if (!bins) return undefined;
  const port = await freePort();
  const server = await launch(bins['redis-server']!, port, ['--bind', '127.0.0.1', ...tlsArgs(ca, port), ...NO_PERSISTENCE]);
  return { url: `rediss://127.0.0.1:${port}`, server };
}

/** A primary and a replica in sync with it. */
export async function startReplicated(options: { tls?: TestCa } = {}): Promise<{ primary: RedisProcess; replica: RedisProcess } | undefined> {
  const bins = binaries('redis-server');
  if (!bins) return undefined;
  const server = bins['redis-server']!;
  const { tls } = options;
  const [primaryPort, replicaPort] = await Promise.all([freePort(), freePort()]);
  const listen = (port: number): string[] => (tls ? [...tlsArgs(tls, port), '--tls-replication', 'yes'] : ['--port', String(port)]);
  const primary = await launch(server, primaryPort, ['--bind', '127.0.0.1', ...listen(primaryPort), ...NO_PERSISTENCE]);
  const replica = await launch(server, replicaPort, [
    '--bind',
    '127.0.0.1',
    ...listen(replicaPort),
    ...NO_PERSISTENCE,
    '--replicaof',
    '127.0.0.1',
    String(primaryPort),
  ]);
  await until('the replica to sync', async () => (await ask(replicaPort, (r) => r.info('replication'), tls)).includes('master_link_status:up'));
  return { primary, replica };
}

export interface SentinelSetup {
  /** REDIS_SENTINELS */
  readonly sentinels: string;
  /** REDIS_SENTINEL_MASTER */
  readonly master: string;
  readonly primary: RedisProcess;
  readonly replica: RedisProcess;
  readonly sentinelProcesses: readonly RedisProcess[];
  /** The port the sentinels name as the primary now. */
  primaryPort(): Promise<number>;
}

/**
 * A primary, a replica and three sentinels (quorum 2, a primary down after 1 s), ready for a
 * failover: the sentinels know the replica and each other.
 */
export async function startSentinels(options: { tls?: TestCa } = {}): Promise<SentinelSetup | undefined> {
  const bins = binaries('redis-server');
  if (!bins) return undefined;
  const server = bins['redis-server']!;
  const { tls } = options;
  const master = 'sluice-test';
  const { primary, replica } = (await startReplicated({ tls }))!;
  const primaryPort = primary.port;
  const sentinelPorts = await Promise.all([freePort(), freePort(), freePort()]);
  const sentinelProcesses: RedisProcess[] = [];
  for (const port of sentinelPorts) {
    // A sentinel rewrites its configuration file: one of its own, in a directory of its own.
    const dir = mkdtempSync(join(tmpdir(), 'sluice-sentinel-'));
    const file = join(dir, 'sentinel.conf');
    const lines = [
      'bind 127.0.0.1',
      ...(tls
        ? [
            `port 0`,
            `tls-port ${port}`,
            `tls-cert-file ${tls.certFile}`,
            `tls-key-file ${tls.keyFile}`,
            `tls-ca-cert-file ${tls.caFile}`,
            'tls-auth-clients no',
            'tls-replication yes',
          ]
        : [`port ${port}`]),
      `dir ${dir}`,
      `sentinel monitor ${master} 127.0.0.1 ${primaryPort} 2`,
      `sentinel down-after-milliseconds ${master} 1000`,
      `sentinel failover-timeout ${master} 10000`,
      `sentinel parallel-syncs ${master} 1`,
    ];
    writeFileSync(file, `${lines.join('\n')}\n`);
    sentinelProcesses.push(await launch(server, port, [file, '--sentinel'], 'Sentinel ID is'));
  }
  // Sentinels find the replica through the primary, and each other through hello messages (every 2 s).
  await until('the sentinels to know the replica and each other', async () => {
    for (const sentinel of sentinelProcesses) {
      const fields = (await ask(sentinel.port, (r) => r.call('SENTINEL', 'MASTER', master), tls)) as string[];
      const info = Object.fromEntries(fields.flatMap((v, i) => (i % 2 === 0 ? [[v, fields[i + 1]]] : [])));
      if (info['num-slaves'] !== '1' || info['num-other-sentinels'] !== '2') return false;
    }
    return true;
  });
  return {
    sentinels: sentinelPorts.map((port) => `127.0.0.1:${port}`).join(','),
    master,
    primary,
    replica,
    sentinelProcesses,
    primaryPort: async () => {
      const [, port] = (await ask(sentinelProcesses[0]!.port, (r) => r.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', master), tls)) as [string, string];
      return Number(port);
    },
  };
}

export interface ClusterSetup {
  /** REDIS_CLUSTER_NODES */
  readonly nodes: string;
  readonly processes: readonly RedisProcess[];
  /** An admin connection to the whole cluster. */
  admin(): Cluster;
}

/** Three masters (no replicas) holding every slot, joined by `redis-cli --cluster create`. */
export async function startCluster(options: { tls?: TestCa } = {}): Promise<ClusterSetup | undefined> {
  const bins = binaries('redis-server', 'redis-cli');
  if (!bins) return undefined;
  const { tls } = options;
  const ports = await Promise.all([freePort(), freePort(), freePort()]);
  const processes = await Promise.all(
    ports.map((port) => {
      const dir = mkdtempSync(join(tmpdir(), 'sluice-cluster-'));
      const listen = tls ? [...tlsArgs(tls, port), '--tls-cluster', 'yes', '--tls-replication', 'yes'] : ['--port', String(port)];
      return launch(bins['redis-server']!, port, [
        '--bind',
        '127.0.0.1',
        ...listen,
        ...NO_PERSISTENCE,
        '--dir',
        dir,
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        join(dir, 'nodes.conf'),
        '--cluster-node-timeout',
        '2000',
      ]);
    }),
  );
  const tlsCli = tls ? ['--tls', '--cacert', tls.caFile] : [];
  await run(bins['redis-cli']!, [...tlsCli, '--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes']);
  await until('the cluster to be ok on every node', async () => {
    for (const port of ports) if (!(await ask(port, (r) => r.call('CLUSTER', 'INFO') as Promise<string>, tls)).includes('cluster_state:ok')) return false;
    return true;
  });
  const nodes = ports.map((port) => `127.0.0.1:${port}`).join(',');
  return {
    nodes,
    processes,
    admin: () => {
      const cluster = new Cluster(
        ports.map((port) => ({ host: '127.0.0.1', port })),
        { redisOptions: tls ? { tls: { ca: tls.caPem } } : {}, enableOfflineQueue: true },
      );
      cluster.on('error', () => undefined);
      return cluster;
    },
  };
}
