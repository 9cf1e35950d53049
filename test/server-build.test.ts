import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { buildEntry, buildServer } from '../server/tools/server-bundle.ts';
import { REPO_ROOT, spawnNode } from './helpers/children.ts';
import { childrenOf } from './helpers/proc.ts';
import { startRedis } from './helpers/redis.ts';

// `npm start` rebuilds the server where a running one (or a cluster's primary, which forks workers
// from it) reads its files: a build that fails must leave the last one whole, and one that works
// must not leave chunks behind that nothing names (from the upgrade hunt: a failed build had
// emptied chunks/, and every worker forked after it died at once).

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function scratch(): string {
  mkdirSync(join(REPO_ROOT, 'dist'), { recursive: true });
  const dir = mkdtempSync(join(REPO_ROOT, 'dist', 'test-build-'));
  dirs.push(dir);
  return dir;
}

/** An entry that imports a module of its own dynamically, as server/start.ts does: a chunk. */
function entry(dir: string, name: string, said: string, broken = false): string {
  writeFileSync(join(dir, `${name}-part.ts`), `export const said: string = ${JSON.stringify(said)};\n`);
  const file = join(dir, `${name}.ts`);
  writeFileSync(file, broken ? 'export const = ;\n' : `const { said } = await import('./${name}-part.ts');\nconsole.log(said);\n`);
  return file;
}

const run = (main: string): string => execFileSync(process.execPath, [main], { encoding: 'utf8' }).trim();

describe('building the server bundle', () => {
  it('a build that fails leaves the last one whole and runnable; one that works removes the chunks nothing names', async () => {
    const src = scratch();
    const out = join(scratch(), 'server');
    const main = await buildEntry(entry(src, 'first', 'first build'), out);
    expect(run(main)).toBe('first build');

    await expect(buildEntry(entry(src, 'broken', 'never', true), out)).rejects.toThrow();
    expect(run(main)).toBe('first build');

    await buildEntry(entry(src, 'second', 'second build'), out);
    expect(run(main)).toBe('second build');
    // Only the second build's chunk (and its map) is left.
    const chunks = readdirSync(join(out, 'chunks'));
    expect(chunks.filter((f) => f.endsWith('.mjs'))).toHaveLength(1);
    expect(chunks.every((f) => f.startsWith('second-part'))).toBe(true);
    expect(existsSync(join(out, 'main.mjs.map'))).toBe(true);
  });
});

describe('a cluster whose workers cannot start', () => {
  it('starts the next one after a growing pause, not at once for ever', async () => {
    const redis = await startRedis();
    if (!redis) return;
    const main = await buildServer(join(scratch(), 'server'));
    const child = spawnNode([main], {
      env: { ...process.env, PORT: '0', LOG_LEVEL: 'info', WORKERS: '2', REDIS_URL: redis.url, STORE: 'redis' },
    });
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
    await vi.waitFor(() => expect(out).toMatch(/Sluice listening on .* with 2 workers/), { timeout: 20_000 });
    // The files a worker starts from are gone (a broken install): each new worker dies at once.
    rmSync(join(main, '..', 'chunks'), { recursive: true, force: true });
    const exits = (): number[] =>
      out
        .split('\n')
        .filter((line) => line.includes('"worker exited'))
        .map((line) => (JSON.parse(line) as { time: number }).time);
    process.kill(childrenOf(child.pid!)[0]!, 'SIGKILL');
    await vi.waitFor(() => expect(exits().length).toBeGreaterThanOrEqual(5), { timeout: 20_000 });
    // Each try waits longer than the one before (0.5, 1, 2 s ...), not at once for ever.
    const times = exits();
    const gaps = times.slice(1, 5).map((t, i) => t - times[i]!);
    expect(gaps.slice(1).every((gap, i) => gap >= Math.max(400, gaps[i]!))).toBe(true);
    expect(out).toMatch(/next try in/);
    child.kill('SIGKILL');
  });
});
