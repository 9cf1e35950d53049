import * as esbuild from 'esbuild';
import { fileURLToPath } from 'node:url';
import { serveOrigin, type OriginServer } from './origin-server.ts';

/** Bundles a page script of test/pages/ for the browser, as an app's build would (one ESM file, in memory). */
export async function bundleTestPage(page: string): Promise<string> {
  const result = await esbuild.build({
    entryPoints: [fileURLToPath(new URL(`../pages/${page}`, import.meta.url))],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    define: { 'process.env.NODE_ENV': '"development"' },
    logLevel: 'error',
  });
  return result.outputFiles[0]!.text;
}

/** A page script of test/pages/, bundled and served as an app on an origin of its own (`/` loads it into `#root`). */
export async function serveTestPage(page: string): Promise<OriginServer> {
  const script = await bundleTestPage(page);
  return serveOrigin({
    '/': {
      body: '<!doctype html><html><head><script type="module" src="/app.js"></script></head><body><div id="root"></div></body></html>',
      type: 'text/html',
    },
    '/app.js': { body: script, type: 'text/javascript' },
  });
}
