import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, openSync, rmSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import { missingBinary, requireBinary } from './binaries.ts';
import { REPO_ROOT } from './children.ts';

export interface SmallDisk {
  /** The directory the small file system is mounted on (as the processes run `via` see it). */
  readonly dir: string;
  /** Prefix for a command that must see the small file system (`spawnNode`'s and `startSluiceProcess`'s `via`). */
  readonly via: readonly string[];
  /** Writes a file until the file system is full. */
  fill(): void;
  /** Removes what fill() wrote. */
  free(): void;
}

const holders = new Set<ChildProcess>();
afterEach(async () => {
  for (const holder of [...holders]) {
    holders.delete(holder);
    const exited = once(holder, 'exit');
    holder.kill('SIGKILL');
    await exited;
  }
});

/**
 * A real file system of `sizeMb` that can be filled: a tmpfs mounted in a mount namespace of its
 * own (`unshare -m`, root only), held by a process for the test's life, so that servers started in
 * it (and restarted) see one disk whose space the test controls, and the machine's mounts are
 * untouched. The test reaches it through the holder's /proc/<pid>/root.
 */
export async function startSmallDisk(sizeMb: number): Promise<SmallDisk | undefined> {
  if (!requireBinary('unshare') || !requireBinary('nsenter')) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'sluice-disk-'));
  const holder = spawn(
    'unshare',
    ['-m', '--propagation', 'private', 'sh', '-c', `mount -t tmpfs -o size=${sizeMb}m tmpfs "$0" && echo mounted && exec sleep 86400`, dir],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  holders.add(holder);
  let err = '';
  holder.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const mounted = await new Promise<boolean>((resolve) => {
    holder.stdout.once('data', () => resolve(true));
    holder.once('exit', () => resolve(false));
    holder.once('error', () => resolve(false));
  });
  if (!mounted) return missingBinary('a mount namespace (unshare -m, as root)', `: ${err.trim()}`);
  const seen = `/proc/${holder.pid}/root${dir}`;
  const filler = join(seen, 'filler');
  return {
    dir,
    via: ['nsenter', '-t', String(holder.pid), '-m', `--wd=${REPO_ROOT}`, '--'],
    fill: () => {
      const fd = openSync(filler, 'a');
      try {
        // Smaller and smaller blocks, to the last free byte.
        for (let size = 64 * 1024; size >= 1; size >>= 2) {
          const block = Buffer.alloc(size);
          try {
            for (;;) writeSync(fd, block);
          } catch (error) {
            if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
          }
        }
      } finally {
        closeSync(fd);
      }
    },
    free: () => rmSync(filler, { force: true }),
  };
}
