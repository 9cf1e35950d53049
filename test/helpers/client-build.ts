import { execFile } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLIENT = join(ROOT, 'client');
/** What `npm run build --workspace client` writes: the sluice-client package's compiled files. */
export const CLIENT_DIST = join(CLIENT, 'dist');
const BUILD_INFO = join(CLIENT_DIST, '.tsbuildinfo');

/** The newest modification time among the files the client package is compiled from. */
function newestSource(): number {
  let newest = 0;
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.name === 'dist' || entry.name === 'node_modules' || entry.name === 'web') continue;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else newest = Math.max(newest, statSync(path).mtimeMs);
    }
  };
  walk(CLIENT);
  walk(join(ROOT, 'shared'));
  return Math.max(newest, statSync(join(ROOT, 'tsconfig.json')).mtimeMs);
}

function builtAt(): number {
  try {
    return statSync(BUILD_INFO).mtimeMs;
  } catch {
    return 0;
  }
}

/**
 * Compiles the client package (client/dist/) unless it is newer than its sources: the compiled CLI
 * and the packed tarball are what users run, so the tests run them too.
 */
export async function buildClient(): Promise<void> {
  if (builtAt() > newestSource()) return;
  const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
  await new Promise<void>((resolve, reject) =>
    execFile(process.execPath, [tsc, '-p', join(CLIENT, 'tsconfig.build.json')], { cwd: CLIENT }, (error, stdout, stderr) =>
      error ? reject(new Error(`building the client failed:\n${stdout}${stderr}`)) : resolve(),
    ),
  );
}
