import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Vitest global setup: every temporary directory of the run (data dirs, Redis and PostgreSQL
 * directories, sockets, consumer projects, servers' own) goes under one root, removed at the end,
 * so that a run leaves nothing behind in the machine's /tmp whatever a test forgot or a crash left.
 */
export default function setup(): () => void {
  const root = mkdtempSync(join(tmpdir(), 'sluice-test-'));
  // As /tmp is: PostgreSQL runs as its own user, and some tests run a child as `nobody` (whose tsx
  // keeps its cache in the temporary directory); each must reach, or make, its own directory here.
  chmodSync(root, 0o1777);
  const previous = process.env.TMPDIR;
  process.env.TMPDIR = root;
  return () => {
    if (previous === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = previous;
    rmSync(root, { recursive: true, force: true });
  };
}
