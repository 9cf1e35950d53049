import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildServer, bundle } from '../server/tools/server-bundle.ts';

// Every server under test (Sluice and the baselines) runs as its own child process, started the
// same way: compiled from its sources as they are now, as `npm start` compiles and runs Sluice
// (`node --enable-source-maps <bundle>`), with PORT=0. Its URL is read from the JSON line it prints
// when it listens.

export const repoRoot = fileURLToPath(new URL('..', import.meta.url));

const bundles = new Map<string, Promise<string>>();
/** The entry compiled, once per bench run: Sluice's into the file `npm start` runs, a baseline's into dist/bench/. */
function compiled(entry: string): Promise<string> {
  let file = bundles.get(entry);
  if (!file) {
    file =
      entry === 'server/main.ts'
        ? buildServer()
        : // Another checkout's server (the A/B bench): bundled into that checkout, which it reads its files from.
          isAbsolute(entry)
          ? bundle(entry, join(dirname(entry), '../dist/server/main.mjs'))
          : bundle(entry, join(repoRoot, 'dist/bench', entry.replace(/\.ts$/, '.mjs')));
    bundles.set(entry, file);
  }
  return file;
}

export interface ServerSpec {
  /** Entry file, relative to the repository root. */
  readonly entry: string;
  readonly env: Readonly<Record<string, string>>;
  /**
   * When set, the server runs with `--cpu-prof --cpu-prof-dir=<dir>`: V8 writes one profile per
   * thread when it exits (the main thread's name has thread id 0; tsx's loader thread has its own).
   */
  readonly cpuProfileDir?: string;
}

export interface ChildServer {
  readonly url: string;
  readonly pid: number;
  /** The last lines it printed (for error messages). */
  output(): string;
  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. Safe to call twice. */
  stop(graceMs?: number): Promise<void>;
}

/** Each live server, and the data directory it was given (removed when it exits). */
const live = new Map<ChildProcess, string>();
const removeDataDir = (dir: string): void => rmSync(dir, { recursive: true, force: true });
const killAll = (): void => {
  for (const [child, dir] of live) {
    child.kill('SIGKILL');
    removeDataDir(dir);
  }
};
// Whatever happens to the bench (an error, Ctrl-C), its servers do not outlive it.
process.once('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => {
    killAll();
    process.exit(128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1));
  });
}

const URL_PATTERN = /"url":"(http:\/\/[^"]+)"/;
const MAX_OUTPUT = 16_384;

export async function startServer(spec: ServerSpec, startTimeoutMs = 30_000): Promise<ChildServer> {
  const nodeArgs: string[] = [];
  if (spec.cpuProfileDir) nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${spec.cpuProfileDir}`);
  const file = await compiled(spec.entry);
  // Each server's embedded store in a directory of its own (the default store writes under DATA_DIR),
  // gone with the server: a full bench starts hundreds of them.
  const dataDir = mkdtempSync(join(tmpdir(), 'sluice-bench-data-'));
  const child = spawn(process.execPath, [...nodeArgs, '--enable-source-maps', file], {
    cwd: repoRoot,
    env: { ...process.env, NODE_ENV: 'production', PORT: '0', DATA_DIR: dataDir, ...spec.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.set(child, dataDir);
  child.once('exit', () => {
    live.delete(child);
    removeDataDir(dataDir);
  });
  let out = '';
  const keep = (chunk: Buffer): void => {
    out += chunk.toString();
    if (out.length > MAX_OUTPUT) out = out.slice(-MAX_OUTPUT / 2);
  };
  // Always drained, so that a chatty server never blocks on a full pipe.
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);

  const stop = async (graceMs = 5000): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  };

  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${spec.entry} did not announce its URL within ${startTimeoutMs} ms: ${out}`)), startTimeoutMs);
      const onData = (): void => {
        const match = URL_PATTERN.exec(out);
        if (!match) return;
        clearTimeout(timer);
        child.stdout.off('data', onData);
        resolve(match[1]!);
      };
      child.stdout.on('data', onData);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${spec.entry} exited (${code ?? signal}) before listening: ${out}`));
      });
      child.once('error', reject);
    });
    return { url, pid: child.pid!, output: () => out, stop };
  } catch (error) {
    await stop(1000);
    throw error;
  }
}
