import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach } from 'vitest';
import { requireBinary } from './binaries.ts';
import { freePort } from './ports.ts';

/** The documented nginx site files (docs/deploy/), which the tests run as they are. */
export type SiteFile = 'nginx.conf' | 'nginx-no-websocket.conf';

export interface Nginx {
  /** `http://127.0.0.1:<port>`: where clients connect. */
  readonly url: string;
  /** The site file as nginx ran it (the documented one with the test's port and upstreams). */
  readonly site: string;
  /** What nginx wrote to its error log (stderr) so far. */
  output(): string;
  /** Its access log so far (where the site file's `access_log` line writes, or the main file's). */
  accessLog(): string;
  /** Fast shutdown (SIGTERM), waiting for nginx to exit. Safe to call twice. */
  stop(): Promise<void>;
}

const DEPLOY_DIR = fileURLToPath(new URL('../../docs/deploy/', import.meta.url));

/**
 * The documented site file, pointed at this test's processes. Only two things change, and each
 * must be found exactly where the file's header says, or this throws (so the docs cannot drift
 * away from what is tested): the `listen 80;` line gets the test's port, the `server` lines
 * of `upstream sluice { }` are replaced by one per address, with the first line's parameters, and
 * the access log goes to `logDir` (its format is kept).
 */
export function renderSite(text: string, port: number, upstreams: readonly string[], logDir: string): string {
  if (upstreams.length === 0) throw new Error('renderSite: at least one upstream');
  const log = /^([ \t]*)access_log \/var\/log\/nginx\/access\.log sluice;[ \t]*$/gm;
  if ((text.match(log) ?? []).length !== 1) throw new Error('the site file must have exactly one "access_log /var/log/nginx/access.log sluice;" line');
  text = text.replace(log, `$1access_log ${logDir}/access.log sluice;`);
  const listen = /^([ \t]*)listen 80;[ \t]*$/gm;
  const listens = text.match(listen) ?? [];
  if (listens.length !== 1) throw new Error(`the site file must have exactly one "listen 80;" line, found ${listens.length}`);
  let out = text.replace(listen, `$1listen 127.0.0.1:${port};`);

  const block = /^upstream sluice \{\n([\s\S]*?)^\}/m.exec(out);
  if (!block) throw new Error('the site file must have an "upstream sluice { ... }" block');
  const lines = block[1]!.split('\n');
  const servers = lines.flatMap((line, i) => {
    const m = /^([ \t]*)server[ \t]+(\S+?)((?:[ \t]+[^;]*)?);[ \t]*$/.exec(line);
    return m ? [{ i, indent: m[1]!, params: m[3] ?? '' }] : [];
  });
  if (servers.length === 0) throw new Error('the upstream block has no server lines');
  if (servers.at(-1)!.i - servers[0]!.i !== servers.length - 1) throw new Error("the upstream block's server lines must be consecutive");
  const { indent, params } = servers[0]!;
  const replaced = [
    ...lines.slice(0, servers[0]!.i),
    ...upstreams.map((address) => `${indent}server ${address.replace(/^https?:\/\//, '')}${params};`),
    ...lines.slice(servers.at(-1)!.i + 1),
  ].join('\n');
  out = out.slice(0, block.index) + block[0].replace(block[1]!, replaced) + out.slice(block.index + block[0].length);
  return out;
}

/**
 * The main configuration around the site file: what Debian's /etc/nginx/nginx.conf provides (pid,
 * logs, temp paths, `gzip on`), here all inside a temp dir, plus a worse neighbour than Debian's: a
 * `gzip_types` that lists the stream types, which the site file must switch off for itself.
 * One worker, so that round robin is strict (each worker keeps its own rotation).
 */
function mainConfig(dir: string): string {
  const asRoot = process.getuid?.() === 0;
  return [
    // Workers run as the user running the tests (the `user` directive only matters under root).
    asRoot ? 'user root;' : '',
    'worker_processes 1;',
    `pid ${dir}/nginx.pid;`,
    'error_log stderr notice;',
    'events { worker_connections 1024; }',
    'http {',
    `  access_log ${dir}/access.log;`,
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${dir}/${t};`),
    '  gzip on;',
    '  gzip_types text/event-stream application/json text/javascript;',
    `  include ${dir}/sluice.conf;`,
    '}',
    '',
  ].join('\n');
}

/** Running nginx processes and their temp dirs. */
const running = new Map<ChildProcess, string>();
afterEach(async () => {
  for (const child of [...running.keys()]) await stopChild(child);
});

async function stopChild(child: ChildProcess): Promise<void> {
  const dir = running.get(child);
  running.delete(child);
  try {
    if (child.exitCode === null && child.signalCode === null) await terminate(child);
  } finally {
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

async function terminate(child: ChildProcess): Promise<void> {
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => {
    // nginx runs in its own process group (master and worker): end both.
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }, 5000);
  await exited;
  clearTimeout(timer);
}

function nginxBinary(): string | undefined {
  // Debian installs it in /usr/sbin, which is not on a normal user's PATH.
  return existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : requireBinary('nginx');
}

/**
 * A real nginx (Debian's package) running docs/deploy/<site> in front of `upstreams` (Sluice base
 * URLs), on a free port, as the current user, with pid, logs and temp files in a temp dir. Stopped
 * after the test. Undefined when nginx is not installed locally.
 */
export async function startNginx(site: SiteFile, upstreams: readonly string[]): Promise<Nginx | undefined> {
  const binary = nginxBinary();
  if (!binary) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'sluice-nginx-'));
  const port = await freePort();
  const rendered = renderSite(readFileSync(join(DEPLOY_DIR, site), 'utf8'), port, upstreams, dir);
  writeFileSync(`${dir}/sluice.conf`, rendered);
  writeFileSync(`${dir}/nginx.conf`, mainConfig(dir));

  const child = spawn(binary, ['-p', `${dir}/`, '-c', `${dir}/nginx.conf`, '-e', 'stderr', '-g', 'daemon off;'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  running.set(child, dir);
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
  // The listening socket is bound while the configuration is read, before the worker starts.
  await new Promise<void>((resolve, reject) => {
    const onData = (): void => {
      if (/start worker process/.test(out)) {
        child.stderr.off('data', onData);
        child.off('exit', onExit);
        resolve();
      }
    };
    const onExit = (code: number | null): void => reject(new Error(`nginx exited with ${code}:\n${out}\n--- site file ---\n${rendered}`));
    child.stderr.on('data', onData);
    child.once('exit', onExit);
  });
  let stopped: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}`,
    site: rendered,
    output: () => out,
    accessLog: () => (existsSync(`${dir}/access.log`) ? readFileSync(`${dir}/access.log`, 'utf8') : ''),
    stop: () => {
      stopped ??= stopChild(child);
      return stopped;
    },
  };
}
