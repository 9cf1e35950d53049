import { existsSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { packageRoot } from '../package-root.ts';

const ROOT = packageRoot();

/** Every build's: one ES module for Node 20, packages left as imports, with a source map. */
const NODE_MODULE = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  packages: 'external',
  sourcemap: true,
  logLevel: 'warning',
} as const;

/** What `npm start` runs: the server's entry (its chunks beside it). */
export const SERVER_BUNDLE = join(ROOT, 'dist/server/main.mjs');

/**
 * Compiles a TypeScript entry (relative to the package root, or absolute) and everything it imports from this
 * repository into one ES module (packages stay imports from node_modules), with a source map so
 * that stack traces name the TypeScript lines (run it with `node --enable-source-maps`).
 *
 * The sources also run as they are through tsx (`npm run dev`), but tsx keeps function names by
 * wrapping every function it creates in a call that redefines the function's `name`, closures
 * made for each request and each stream included; in the bench that cost the SSE route 8–16% more
 * CPU per event (five comparisons in the same runs).
 */
export async function bundle(entry: string, outfile: string): Promise<string> {
  const esbuild = await import('esbuild');
  await esbuild.build({ ...NODE_MODULE, entryPoints: [resolve(ROOT, entry)], outfile });
  return outfile;
}

/**
 * Writes SERVER_BUNDLE (or `main.mjs` in `outdir`) from server/start.ts, with the server in chunks
 * beside it (`chunks/`): the entry runs its first lines before any package loads.
 */
export function buildServer(outdir: string = dirname(SERVER_BUNDLE)): Promise<string> {
  return buildEntry(resolve(ROOT, 'server/start.ts'), outdir);
}

/**
 * Compiles `entry` into `outdir/main.mjs` and its chunks (`chunks/`, content-hashed). A running
 * server, or a cluster's primary that forks workers from these files, may read them at any time:
 * nothing is removed before the build has written the new files (esbuild writes nothing when it
 * fails), and then only the chunks the new build does not name.
 */
export async function buildEntry(entry: string, outdir: string): Promise<string> {
  const esbuild = await import('esbuild');
  const built = await esbuild.build({
    entryPoints: { main: resolve(ROOT, entry) },
    outdir,
    outExtension: { '.js': '.mjs' },
    chunkNames: 'chunks/[name]-[hash]',
    splitting: true,
    ...NODE_MODULE,
    metafile: true,
    absWorkingDir: ROOT,
  });
  const chunks = join(outdir, 'chunks');
  const written = new Set(Object.keys(built.metafile.outputs).map((file) => resolve(ROOT, file)));
  for (const file of existsSync(chunks) ? readdirSync(chunks) : []) {
    const path = join(chunks, file);
    if (!written.has(path)) rmSync(path, { force: true });
  }
  return join(outdir, 'main.mjs');
}
