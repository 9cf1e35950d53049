import type { IncomingMessage, ServerResponse } from 'node:http';
import { isAllowedHost, hostnameOf, type AllowedHosts } from '../../net/hosts.ts';
import { normalizeOrigin, type AllowedOrigins } from '../../net/origins.ts';

/** Who is calling, as far as a browser's origin rules go. */
export type OriginVerdict =
  /** No `Origin` and no sign of a cross-site fetch: a program (curl, an SDK), or a same-origin GET. */
  | { readonly kind: 'no-origin' }
  /** A page served by this server (the chat page). */
  | { readonly kind: 'same-origin' }
  /** A page of an allowed origin: CORS headers let it read the answer. */
  | { readonly kind: 'allowed'; readonly origin: string }
  | { readonly kind: 'refused'; readonly reason: string };

export interface OriginPolicyOptions {
  /** Origins besides the server's own that may use it from a browser (ALLOWED_ORIGINS); `*` for any. */
  readonly allowed: AllowedOrigins;
  /** The names pages may reach the server by (ALLOWED_HOSTS): its own origin is one of these. Default: any. */
  readonly hosts?: AllowedHosts;
  /** How long a browser may cache a preflight's answer, in seconds. */
  readonly preflightMaxAgeSeconds?: number;
}

const METHODS = 'GET, POST, DELETE';
// What the client's links and SDKs send; anything else a preflight asks for is refused.
const HEADER_LIST = /^[A-Za-z0-9-]+(?:\s*,\s*[A-Za-z0-9-]+)*$/;
const MAX_HEADER_LIST = 1024;
/** Answers a page may read besides the CORS-safelisted ones (a 429's wait, a 401's scheme, a reply's id to resume it by, the openai SDK's retry hint). */
const EXPOSED = 'Retry-After, WWW-Authenticate, X-Sluice-Reply-Id, x-should-retry';

/**
 * Which browser pages may use Sluice (ALLOWED_ORIGINS; the server's own origin always may).
 *
 * - A request with an `Origin` from elsewhere is refused, whatever it asks: refusing only the
 *   answer (CORS) would still let a simple request (a form post, a no-cors fetch) act.
 * - A request without `Origin` comes from a program, unless the browser says otherwise: a cross-site
 *   no-cors GET carries no `Origin` in Chromium, but Fetch Metadata's `Sec-Fetch-Site` names it, and
 *   a GET of `chat.stream` starts a reply. (Browsers without Fetch Metadata cannot be told apart.)
 * - WebSocket handshakes always carry `Origin` in browsers.
 *
 * The own origin is the request's `Host` (the scheme is not compared: behind a TLS proxy the page is
 * `https` while Sluice sees `http`). Every request must name the server in its `Host`
 * (ALLOWED_HOSTS), programs' too: a page whose DNS name was rebound to Sluice's address has an
 * Origin that agrees with its Host, and often neither Origin nor Fetch Metadata at all.
 */
export class OriginPolicy {
  readonly #allowed: AllowedOrigins;
  readonly #hosts: AllowedHosts;
  readonly #maxAge: string;

  constructor(options: OriginPolicyOptions) {
    const { allowed, preflightMaxAgeSeconds = 600 } = options;
    if (allowed !== '*') {
      for (const origin of allowed) {
        if (normalizeOrigin(origin) !== origin) throw new RangeError(`OriginPolicy: "${origin}" is not a normalized origin (see parseAllowedOrigins)`);
      }
    }
    if (!Number.isInteger(preflightMaxAgeSeconds) || preflightMaxAgeSeconds < 0) {
      throw new RangeError(`OriginPolicy: preflightMaxAgeSeconds must be a non-negative integer, got ${preflightMaxAgeSeconds}`);
    }
    this.#allowed = allowed;
    this.#hosts = options.hosts ?? '*';
    this.#maxAge = String(preflightMaxAgeSeconds);
  }

  /** The verdict for a request to an API route (anything but the page and its assets). */
  check(req: IncomingMessage): OriginVerdict {
    const origin = req.headers.origin;
    const host = req.headers.host;
    // Whatever else it carries: a rebound page's same-origin GET has no Origin and, to a plain-http
    // name other than localhost, no Fetch Metadata from Chromium either, so it looks like a program.
    if (!isAllowedHost(this.#hosts, host)) return this.#refusedHost(host);
    if (origin === undefined) {
      const site = req.headers['sec-fetch-site'];
      if (site === 'cross-site' || site === 'same-site') {
        return { kind: 'refused', reason: `Requests from another site must come with an allowed Origin (this one has Sec-Fetch-Site: ${site})` };
      }
      return { kind: 'no-origin' };
    }
    const normalized = normalizeOrigin(origin);
    if (normalized !== undefined && sameHost(normalized, host)) return { kind: 'same-origin' };
    if (this.#allowed === '*' || (normalized !== undefined && this.#allowed.has(normalized))) return { kind: 'allowed', origin };
    return { kind: 'refused', reason: `The origin ${origin.slice(0, 200)} is not allowed (ALLOWED_ORIGINS)` };
  }

  #refusedHost(host: string | undefined): OriginVerdict {
    const name = hostnameOf(host) ?? String(host ?? '').slice(0, 200);
    return { kind: 'refused', reason: `The host ${name} is not allowed (ALLOWED_HOSTS)` };
  }

  /** Whether a WebSocket upgrade may proceed (the same verdict as any request: a handshake is a GET). */
  allowsUpgrade(req: IncomingMessage): boolean {
    return this.check(req).kind !== 'refused';
  }

  /** Lets an allowed page read the answer (set before the handler writes its head). */
  expose(res: ServerResponse, verdict: OriginVerdict): void {
    if (verdict.kind !== 'allowed') return;
    res.setHeader('Access-Control-Allow-Origin', verdict.origin);
    res.setHeader('Access-Control-Expose-Headers', EXPOSED);
    res.setHeader('Vary', 'Origin');
  }

  /** Whether a request is a CORS preflight (answered by `preflight`, never by a route). */
  isPreflight(req: IncomingMessage): boolean {
    return req.method === 'OPTIONS' && req.headers.origin !== undefined && req.headers['access-control-request-method'] !== undefined;
  }

  /** Answers a preflight: 204 with the permissions for an allowed origin, 403 without any for others. */
  preflight(req: IncomingMessage, res: ServerResponse): void {
    const verdict = this.check(req);
    if (verdict.kind !== 'allowed') {
      res.writeHead(403, { 'Content-Length': 0, Vary: 'Origin' }).end();
      return;
    }
    const headers: Record<string, string | number> = {
      'Access-Control-Allow-Origin': verdict.origin,
      'Access-Control-Allow-Methods': METHODS,
      'Access-Control-Max-Age': this.#maxAge,
      Vary: 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers',
      'Content-Length': 0,
    };
    const asked = req.headers['access-control-request-headers'];
    if (asked !== undefined && asked.length <= MAX_HEADER_LIST && HEADER_LIST.test(asked)) headers['Access-Control-Allow-Headers'] = asked;
    res.writeHead(204, headers).end();
  }
}

/** Whether an origin names the host a request was sent to (its `Host` header). */
function sameHost(origin: string, host: string | undefined): boolean {
  if (!host) return false;
  const scheme = origin.slice(0, origin.indexOf(':'));
  return normalizeOrigin(`${scheme}://${host}`) === origin;
}
