import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { packageRoot } from '../../package-root.ts';

/** The browser chat page's sources (client/web/). */
export const WEB_SOURCE_DIR = join(packageRoot(), 'client/web/');

export interface WebAsset {
  readonly body: Buffer;
  readonly contentType: string;
  /** A strong validator: the body's hash. */
  readonly etag: string;
}

/** Files of the page by the path they are served at. */
export type WebAssets = ReadonlyMap<string, WebAsset>;

// Node-only packages the typed client's Node entry uses; the browser bundle must not contain them.
const NODE_ONLY = /^(ws|eventsource|node:.*)$/;

function asset(body: string | Uint8Array, contentType: string): WebAsset {
  const buffer = Buffer.from(body);
  return { body: buffer, contentType, etag: `"${createHash('sha256').update(buffer).digest('base64url').slice(0, 27)}"` };
}

/**
 * Builds the page: `/` (index.html), `/assets/app.css`, and `/assets/app.js`, the bundle of
 * client/web/app.ts made in-process by esbuild (imported only when called, so start-up does not
 * pay for it).
 */
export async function buildWebAssets(options: { minify?: boolean } = {}): Promise<WebAssets> {
  const esbuild = await import('esbuild');
  const result = await esbuild.build({
    entryPoints: [`${WEB_SOURCE_DIR}app.ts`],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    target: ['es2022', 'chrome110', 'firefox115', 'safari16'],
    minify: options.minify ?? true,
    legalComments: 'none',
    logLevel: 'silent',
    plugins: [
      {
        name: 'browser-only',
        setup(build) {
          build.onResolve({ filter: NODE_ONLY }, (args) => ({
            errors: [{ text: `${args.path} is Node-only; the browser bundle must use client/browser.ts (imported by ${args.importer})` }],
          }));
        },
      },
    ],
  });
  const js = result.outputFiles[0];
  if (!js) throw new Error('esbuild produced no output for client/web/app.ts');
  const [html, css] = await Promise.all([readFile(`${WEB_SOURCE_DIR}index.html`), readFile(`${WEB_SOURCE_DIR}app.css`)]);
  return new Map([
    ['/', asset(html, 'text/html; charset=utf-8')],
    ['/assets/app.css', asset(css, 'text/css; charset=utf-8')],
    ['/assets/app.js', asset(js.contents, 'text/javascript; charset=utf-8')],
  ]);
}
