import * as esbuild from 'esbuild';
import { fileURLToPath } from 'node:url';

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
