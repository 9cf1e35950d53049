import { execFile, execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import postgres from 'postgres';
import { afterAll } from 'vitest';
import { missingBinary } from './binaries.ts';
import { freePort } from './ports.ts';

const run = promisify(execFile);

export interface PostgresServer {
  /** The server's own `postgres` database. */
  readonly url: string;
  /** A new, empty database on this server (one per test keeps tests apart); resolves with its URL. */
  createDatabase(): Promise<string>;
  /** Stops the server, keeping its data, until `resume` (an outage). */
  halt(): Promise<void>;
  /** Starts it again on the same port, with its data. */
  resume(): Promise<void>;
  /** Freezes the server and its backends (SIGSTOP): connections stay open and nothing answers. */
  pause(): void;
  /** Lets a paused server run again (SIGCONT). */
  unpause(): void;
  stop(): Promise<void>;
}

const servers = new Set<PostgresServer>();
// One server per test file: starting one costs about a second, a database in it a few ms.
afterAll(async () => {
  for (const server of [...servers]) await server.stop();
});

/**
 * Debian's binaries live in /usr/lib/postgresql/<version>/bin, off PATH; the newest installed wins.
 * Undefined (after a warning) when PostgreSQL is not installed, a failure under SLUICE_REQUIRE_BINARIES=1.
 */
function postgresBin(): string | undefined {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).filter((v) => existsSync(join(root, v, 'bin/initdb'))) : [];
  versions.sort((a, b) => Number(b) - Number(a));
  if (versions[0]) return join(root, versions[0], 'bin');
  try {
    const initdb = execFileSync('bash', ['-c', 'command -v initdb'], { encoding: 'utf8' }).trim();
    return join(initdb, '..');
  } catch {
    return missingBinary('postgresql', ' (initdb in /usr/lib/postgresql/<version>/bin or on PATH)');
  }
}

/**
 * A throwaway PostgreSQL server on a free port, in a temporary directory, stopped (and the
 * directory removed) after the test file. PostgreSQL refuses to run as root, so under root (CI)
 * it runs as the `postgres` user Debian's package creates. Durability is off: nothing here must
 * survive the server.
 */
export async function startPostgres(): Promise<PostgresServer | undefined> {
  const bin = postgresBin();
  if (!bin) return undefined;
  const root = process.getuid?.() === 0;
  const dir = mkdtempSync(join(tmpdir(), 'sluice-pg-'));
  if (root)
    chownSync(dir, Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' })), Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' })));
  const as = (program: string, args: string[]): [string, string[]] =>
    root ? ['runuser', ['-u', 'postgres', '--', join(bin, program), ...args]] : [join(bin, program), args];
  const data = join(dir, 'data');
  await run(...as('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C']));
  const port = await freePort();
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off`;
  const start = async (): Promise<void> => {
    await run(...as('pg_ctl', ['-D', data, '-l', join(dir, 'log'), '-w', '-t', '30', '-o', options, 'start']));
  };
  await start();

  const stopSync = (): void => {
    try {
      execFileSync(...as('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']), { stdio: 'ignore' });
    } catch {
      // already stopped
    }
  };
  // pg_ctl detaches the server: should the test process die without its afterAll, take it along.
  process.once('exit', stopSync);

  // The postmaster (first line of postmaster.pid) and every backend it forked.
  const signalAll = (signal: NodeJS.Signals): void => {
    const postmaster = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
    const children = execFileSync('pgrep', ['-P', String(postmaster)], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
      .map(Number);
    for (const pid of [postmaster, ...children]) process.kill(pid, signal);
  };
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const admin = postgres(url, { max: 1, onnotice: () => undefined });
  let databases = 0;
  let stopped: Promise<void> | undefined;
  const server: PostgresServer = {
    url,
    async createDatabase() {
      const name = `t${++databases}`;
      // FILE_COPY: copying the small template beats writing it through the WAL (the default).
      await admin.unsafe(`CREATE DATABASE ${name} STRATEGY = FILE_COPY`);
      return `postgres://postgres@127.0.0.1:${port}/${name}`;
    },
    async halt() {
      await run(...as('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']));
    },
    resume: start,
    pause: () => signalAll('SIGSTOP'),
    unpause: () => signalAll('SIGCONT'),
    stop() {
      stopped ??= (async () => {
        servers.delete(server);
        await admin.end({ timeout: 1 });
        await run(...as('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop'])).catch(() => undefined);
        process.off('exit', stopSync);
        rmSync(dir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
  servers.add(server);
  return server;
}
