/**
 * Writes the browser chat page to dist/web/ (gitignored): index.html and assets/, the same files
 * Sluice serves at `/` (it builds them in-process on the first request; this is for inspecting
 * them or hosting them elsewhere).   npm run build:web
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildWebAssets } from '../transport/http/web-assets.ts';

const out = fileURLToPath(new URL('../../dist/web/', import.meta.url));
const assets = await buildWebAssets();
for (const [path, file] of assets) {
  const target = join(out, path === '/' ? 'index.html' : path.slice(1));
  await mkdir(dirname(target), { recursive: true });
  await writeFile(target, file.body);
  console.log(`${target} (${file.body.length} bytes)`);
}
