import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// Targets that keep history in PostgreSQL need a server: one is started for the whole bench run
// (Debian's package, as the postgres user, in a directory of its own, on a free port), and stopped
// when the run is over (`stopBenchPostgres`). Each target gets a database of its own.

interface Server {
  readonly bin: string;
  readonly dir: string;
  readonly port: number;
}

let started: Promise<Server | undefined> | undefined;
let server: Server | undefined;
let databases = 0;

function bin(): string | undefined {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).filter((v) => existsSync(join(root, v, 'bin/initdb'))) : [];
  versions.sort((a, b) => Number(b) - Number(a));
  return versions[0] && join(root, versions[0], 'bin');
}

const asPostgres = (command: string, args: readonly string[]): void => {
  const user = process.getuid?.() === 0 ? ['runuser', '-u', 'postgres', '--'] : [];
  execFileSync(user[0] ?? command, [...user.slice(1), ...(user.length > 0 ? [command] : []), ...args], { stdio: 'ignore' });
};

/** A new database's URL on the bench's PostgreSQL, or undefined when PostgreSQL is not installed. */
export async function benchPostgresUrl(): Promise<string | undefined> {
  started ??= (async () => {
    const dir0 = bin();
    if (!dir0) return undefined;
    const probe = createServer().listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const { port } = probe.address() as { port: number };
    await new Promise((resolve) => probe.close(resolve));
    const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-pg-'));
    if (process.getuid?.() === 0)
      chownSync(
        dir,
        Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' })),
        Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' })),
      );
    asPostgres(join(dir0, 'initdb'), ['-D', join(dir, 'data'), '-A', 'trust', '-U', 'postgres']);
    asPostgres(join(dir0, 'pg_ctl'), [
      '-D',
      join(dir, 'data'),
      '-l',
      join(dir, 'log'),
      '-w',
      'start',
      '-o',
      `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=on`,
    ]);
    server = { bin: dir0, dir, port };
    return server;
  })();
  const s = await started;
  if (!s) return undefined;
  const name = `bench_${++databases}`;
  spawnSync(join(s.bin, 'createdb'), ['-h', '127.0.0.1', '-p', String(s.port), '-U', 'postgres', name], { stdio: 'ignore' });
  return `postgres://postgres@127.0.0.1:${s.port}/${name}`;
}

/** Stops the bench's PostgreSQL, if one was started. */
export function stopBenchPostgres(): void {
  const s = server;
  server = undefined;
  started = undefined;
  if (!s) return;
  try {
    asPostgres(join(s.bin, 'pg_ctl'), ['-D', join(s.dir, 'data'), '-m', 'fast', '-w', 'stop']);
  } finally {
    rmSync(s.dir, { recursive: true, force: true });
  }
}
