import type { IncomingMessage, ServerResponse } from 'node:http';
import { SluiceError } from '../../core/errors.ts';
import { sendError } from './json-io.ts';
import type { RouteDeps, RouteHandler } from './route-context.ts';
import { buildWebAssets, type WebAssets } from './web-assets.ts';

// Built once per process, on the first request for the page, then served from memory.
let built: Promise<WebAssets> | undefined;

function assets(deps: RouteDeps): Promise<WebAssets> {
  built ??= buildWebAssets().catch((error: unknown) => {
    built = undefined; // the next request tries again
    deps.logger.error({ err: error }, 'building the browser chat page failed');
    throw error;
  });
  return built;
}

/** A Host header fit to name in a policy (a name or address, and a port). */
const HOST = /^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/;

/**
 * Everything the page needs comes from this server: no CDN, no inline script, and connections to
 * this server only. Its WebSocket is named with the host the page was asked for, as ws: and wss:
 * (behind a TLS proxy the page is https: while Sluice sees http:); `'self'` alone matches ws: only
 * in newer browsers.
 */
function securityHeaders(req: IncomingMessage): Record<string, string> {
  const host = req.headers.host;
  const sockets = host && HOST.test(host) ? ` ws://${host} wss://${host}` : '';
  return {
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    'Content-Security-Policy': `default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'${sockets}; base-uri 'none'; form-action 'self'; frame-ancestors 'none'`,
    Vary: 'Host',
  };
}

async function serve(path: string, req: IncomingMessage, res: ServerResponse, deps: RouteDeps): Promise<void> {
  let files: WebAssets;
  try {
    files = await assets(deps);
  } catch {
    sendError(res, new SluiceError('internal', 'The chat page could not be built; see the server log'));
    return;
  }
  const file = files.get(path);
  if (!file) {
    sendError(res, new SluiceError('not_found', `No route for GET ${path}`));
    return;
  }
  const headers = { ETag: file.etag, 'Cache-Control': 'no-cache', ...securityHeaders(req) };
  if (matchesNoneMatch(req.headers['if-none-match'], file.etag)) {
    res.writeHead(304, headers).end();
    return;
  }
  res.writeHead(200, { 'Content-Type': file.contentType, 'Content-Length': file.body.length, ...headers });
  res.end(file.body);
}

/** `GET /`: the browser chat page. */
export const handleWebPage: RouteHandler = (req, res, deps) => serve('/', req, res, deps);

/** `GET /assets/<name>`: the page's script and style sheet. */
export const handleWebAsset: RouteHandler = (req, res, deps, params) => serve(`/assets/${params[0] ?? ''}`, req, res, deps);

/**
 * If-None-Match as RFC 9110 13.1.2 reads it: `*`, or a list of tags compared weakly (`W/"x"` is
 * `"x"`), as caches and proxies that weaken tags send them.
 */
function matchesNoneMatch(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag);
}
