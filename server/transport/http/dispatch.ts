import type { IncomingMessage, ServerResponse } from 'node:http';
import { isEndUser } from '../../core/credentials.ts';
import { SluiceError } from '../../core/errors.ts';
import type { Admission } from '../admission.ts';
import { bearerToken } from './bearer.ts';
import { sendError } from './json-io.ts';
import { normalizePath } from './normalize-path.ts';
import type { OriginPolicy } from './origin-policy.ts';
import type { RouteDeps } from './route-context.ts';
import { ROUTES } from './routes.ts';

export interface DispatchOptions {
  readonly admission: Admission;
  readonly origins: OriginPolicy;
  readonly deps: RouteDeps;
  /** Where the owner of an authenticated request is kept for the route and the request log. */
  readonly owners: WeakMap<IncomingMessage, string>;
}

/**
 * The one way a request reaches a route: its path normalised, matched in the routing table, then
 * the route's checks in a fixed order (preflight, method, origin, credential) before its handler.
 */
export function createDispatcher(options: DispatchOptions): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const { admission, origins, deps, owners } = options;
  return async (req, res) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = normalizePath(q === -1 ? url : url.slice(0, q));
    // tRPC reads the procedure from the URL too: it must see the path the route was chosen by.
    if (path !== undefined) req.url = q === -1 ? path : path + url.slice(q);
    // A route for the path that does not serve the method answers only if no later one does.
    let wrongMethod: (typeof ROUTES)[number] | undefined;
    for (const route of path === undefined ? [] : ROUTES) {
      const match = route.path.exec(path!);
      if (!match) continue;
      if (!route.anySite && origins.isPreflight(req)) {
        origins.preflight(req, res);
        return;
      }
      // HEAD is GET without the body, as HTTP asks wherever GET is served: node:http leaves the body
      // out (it decided so from the method it received), and the route, tRPC's handler too (which
      // would answer any HEAD 204 itself), runs as for GET.
      if (req.method === 'HEAD' && (route.method === 'GET' || route.method === '*') && !route.stream) req.method = 'GET';
      if (route.method !== '*' && req.method !== route.method) {
        wrongMethod ??= route;
        // Nothing behind a stream may serve its HEAD either: it would start the stream.
        if (req.method === 'HEAD' && route.stream) break;
        continue;
      }
      if (!route.anySite) {
        const verdict = origins.check(req);
        if (verdict.kind === 'refused') {
          (route.sendError ?? sendError)(res, new SluiceError('forbidden', verdict.reason), req, deps);
          return;
        }
        origins.expose(res, verdict);
      }
      if (!route.open) {
        try {
          const owner = await admission.owner(bearerToken(req.headers.authorization));
          if (route.operators && isEndUser(owner)) throw new SluiceError('unauthorized');
          owners.set(req, owner);
        } catch (error) {
          if (error instanceof SluiceError && error.code === 'unauthorized') res.setHeader('WWW-Authenticate', 'Bearer');
          (route.sendError ?? sendError)(res, error, req, deps);
          return;
        }
      }
      await route.handler(req, res, deps, match.slice(1));
      return;
    }
    if (wrongMethod) (wrongMethod.sendError ?? sendError)(res, new SluiceError('not_found', `${req.method} is not supported on ${path}`), req, deps);
    else sendError(res, new SluiceError('not_found', `No route for ${req.method} ${path ?? url.slice(0, q === -1 ? undefined : q)}`));
  };
}
